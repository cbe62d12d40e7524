package dispatcher

import "slices"

// forgetGone makes the producer forget the target topics a production
// found missing, once nothing of that production is buffered any more
// (its transaction ended, or its records were all answered).
//
// franz-go keeps the topic id of every topic it produced to. A topic
// deleted and created again has a new id, which the client does not adopt:
// every record to it then fails with UNKNOWN_TOPIC_ID for the client's
// life, until the topic is purged from it. So a target deleted for a
// while would refuse every later firing of a recurring schedule, and
// every schedule, long after it was created again. Purged, the topic is
// looked up afresh at its next record: created again, it takes records;
// still missing, its schedules wait --target-wait and are rejected as
// before. A topic missing for good costs a metadata lookup per batch
// that names it, as it did before it was ever produced to.
func (d *Dispatcher) forgetGone(p *production) {
	if len(p.gone) == 0 {
		return
	}
	slices.Sort(p.gone)
	topics := slices.Compact(p.gone)
	d.client().PurgeTopicsFromProducing(topics...)
	d.cfg.Logger.Info().Strs("topics", topics).Msg("target topics missing: forgotten by the producer, looked up afresh at their next record")
}
