// Package envelope is the wire contract of the scheduler for the programs
// around it: producers that schedule and cancel messages, and readers that
// parse what is in the schedules topic. It names the headers of SPEC
// sections 3 and 10, builds the records a producer writes (Schedule,
// Recurring, Cancel) and parses a record of the schedules topic into a
// schedule, a cancel or a tombstone (Parse), with typed errors carrying the
// stable codes of SPEC section 5.
//
// The format is Karafka Pro's Scheduled Messages schema 1.0.0, plus the
// optional schedule_target_epoch_ms extension and the recurrence headers of
// SPEC 10. Everything here is pure: no clock (callers pass now), no
// goroutines, and no I/O but reading a time zone's rules, once per zone.
// The records the service itself writes (targets, tombstones, audit
// records) are built inside the service, from the header names here.
//
// A Go producer schedules with one call and produces with its own client:
//
//	rec, err := envelope.Schedule("orders", time.Now().Add(time.Hour), payload,
//		envelope.WithTargetKey("order-42"))
//	if err != nil { ... }
//	cl.ProduceSync(ctx, rec)
//
// A recurring schedule (SPEC 10) names a cron expression and a zone;
// Recurring sets its due time to the first firing:
//
//	rec, err := envelope.Recurring("reports", envelope.Recurrence{
//		Cron: "0 9 * * MON-FRI", Timezone: "Europe/Paris"}, time.Now(), payload,
//		envelope.WithKey("daily-report"))
//
// Options are typed by what they apply to: a ScheduleOpt to Schedule and
// Recurring, a CancelOpt to Cancel, an Opt (WithTopic) to both. Keys are
// strings. An invalid schedule is an error wrapping both ErrBadSchedule and
// an *Error with the code the service would reject it with.
package envelope
