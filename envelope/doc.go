// Package envelope owns the wire contract of the scheduler: the header names
// of SPEC section 3, parsing a record of the schedules topic into a schedule,
// a cancel or a tombstone (with typed errors carrying the stable codes of
// SPEC section 5), and building every record the service or a producer
// writes: schedules, cancels, target messages, tombstones, audit log records.
//
// The format is Karafka Pro's Scheduled Messages schema 1.0.0, plus the
// optional schedule_target_epoch_ms extension and the recurrence headers of
// SPEC 10. Everything here is pure: no clock (callers pass now), no
// goroutines, and no I/O but reading a time zone's rules, once per zone.
//
// A Go producer schedules with one call and produces with its own client:
//
//	rec, err := envelope.Schedule("orders", time.Now().Add(time.Hour), payload,
//		envelope.WithTargetKey([]byte("order-42")))
//	if err != nil { ... }
//	cl.ProduceSync(ctx, rec)
//
// A recurring schedule (SPEC 10) names a cron expression and a zone;
// Recurring sets its due time to the first firing:
//
//	rec, err := envelope.Recurring("reports", envelope.Recurrence{
//		Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris"}, time.Now(), payload,
//		envelope.WithKey("daily-report"))
package envelope
