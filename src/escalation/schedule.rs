//! On-call schedules: weekly and daily rotations with a handoff time and a time zone, plus overrides.
//!
//! Everything here is pure: the instant to answer for is an argument. Rotation shifts are counted
//! in local calendar days of the schedule's time zone, so a handoff stays at the same wall-clock
//! time across DST changes, and finding the shift in force is arithmetic on dates rather than a
//! walk from the first handoff.

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Serializer;

use crate::config::{Person, Rotation, ScheduleConfig, parse_handoff};

/// A rotation with its time zone and overrides, ready to answer who is on call.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    rotation: Rotation,
    handoff_time: NaiveTime,
    time_zone: Tz,
    /// Never empty: `from_config` refuses a schedule without members.
    members: Vec<Person>,
    /// The local date of members[0]'s first handoff: the first handoff day on or after `start`.
    first_handoff_date: NaiveDate,
    /// In configuration order, because a later entry wins where two overlap.
    overrides: Vec<Override>,
}

/// Someone covering the schedule during [from, until).
#[derive(Debug, Clone)]
struct Override {
    person: Person,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// One shift: who, from when, until when (UTC instants), and whether an override put them there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shift {
    /// Written as `platform:id`, the way people are written everywhere else.
    #[serde(serialize_with = "serialize_person")]
    pub person: Person,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub is_override: bool,
}

fn serialize_person<S: Serializer>(person: &Person, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(person)
}

impl Schedule {
    /// From validated config (config.rs already checked tz/handoff/start/override syntax, but
    /// this returns Err(String) rather than panic if anything is off).
    pub fn from_config(config: &ScheduleConfig) -> Result<Schedule, String> {
        let name = config.name.get_ref().clone();
        if config.members.is_empty() {
            return Err(format!("schedules.{name}: needs at least one member"));
        }
        let time_zone_name = config.timezone.get_ref();
        let time_zone = time_zone_name.parse::<Tz>().map_err(|_| {
            format!("schedules.{name}.timezone: unknown time zone '{time_zone_name}': use an IANA name such as Europe/Berlin or UTC")
        })?;
        let (handoff_weekday, handoff_time) = parse_handoff(config.rotation, config.handoff.get_ref())
            .map_err(|message| format!("schedules.{name}.handoff: {message}"))?;
        let start = match &config.start {
            Some(start) => NaiveDate::parse_from_str(start.get_ref(), "%Y-%m-%d").map_err(|_| {
                format!("schedules.{name}.start: '{}' is not a date: write YYYY-MM-DD", start.get_ref())
            })?,
            None => NaiveDate::from_ymd_opt(2024, 1, 1).ok_or("the default start date 2024-01-01 is not a date")?,
        };
        let first_handoff_date = match handoff_weekday {
            Some(weekday) => {
                let days_ahead = (weekday.num_days_from_monday() + 7 - start.weekday().num_days_from_monday()) % 7;
                start
                    .checked_add_days(Days::new(days_ahead.into()))
                    .ok_or_else(|| format!("schedules.{name}.start: no {weekday} on or after {start}"))?
            }
            None => start,
        };

        let mut overrides = Vec::with_capacity(config.overrides.len());
        for entry in &config.overrides {
            let parse = |text: &str| {
                DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)).map_err(|_| {
                    format!(
                        "schedules.{name}.overrides: '{text}' is not an RFC 3339 time (e.g. 2026-11-20T09:00:00+01:00)"
                    )
                })
            };
            let from = parse(entry.start.get_ref())?;
            let until = parse(entry.end.get_ref())?;
            if until <= from {
                return Err(format!(
                    "schedules.{name}.overrides: the override for {} ends ({}) before it starts ({}); swap start and end",
                    entry.person,
                    entry.end.get_ref(),
                    entry.start.get_ref()
                ));
            }
            overrides.push(Override { person: entry.person.clone(), from, until });
        }

        Ok(Schedule {
            name,
            rotation: config.rotation,
            handoff_time,
            time_zone,
            members: config.members.clone(),
            first_handoff_date,
            overrides,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who is on call at `at`. Overrides win over the rotation. The shift's bounds are where
    /// whoever is on call at `at` stops being so: an override shift is its window, cut where a
    /// later (winning) override takes over; a rotation shift runs from handoff to handoff, cut
    /// where an override takes over or hands back. So `until` is always where `next` starts.
    pub fn on_call(&self, at: DateTime<Utc>) -> Shift {
        match self.overrides.iter().rposition(|entry| entry.from <= at && at < entry.until) {
            Some(index) => {
                let chosen = &self.overrides[index];
                // Only later entries can interrupt this one; earlier ones lose wherever they overlap.
                let (from, until) = cut_around(&self.overrides[index + 1..], at, chosen.from, chosen.until);
                Shift { person: chosen.person.clone(), from, until, is_override: true }
            }
            None => {
                let shift_index = self.shift_index_at(at);
                let handoff = self.handoff(shift_index).unwrap_or(DateTime::<Utc>::MIN_UTC);
                let next_handoff = self.handoff(shift_index + 1).unwrap_or(DateTime::<Utc>::MAX_UTC);
                let (from, until) = cut_around(&self.overrides, at, handoff, next_handoff);
                Shift { person: self.member_for(shift_index).clone(), from, until, is_override: false }
            }
        }
    }

    /// The shift that follows the one in force at `at` (the next person, considering overrides).
    pub fn next(&self, at: DateTime<Utc>) -> Shift {
        self.on_call(self.on_call(at).until)
    }

    fn period_days(&self) -> i64 {
        match self.rotation {
            Rotation::Weekly => 7,
            Rotation::Daily => 1,
        }
    }

    /// Shift k belongs to members[k mod n]; negative k (before the first handoff) counts back.
    fn member_for(&self, shift_index: i64) -> &Person {
        // rem_euclid with a positive modulus lies in 0..len, so the cast cannot wrap.
        let position = shift_index.rem_euclid(self.members.len() as i64) as usize;
        &self.members[position]
    }

    /// The index of the rotation shift in force at `at`, in O(1) of the shifts elapsed.
    fn shift_index_at(&self, at: DateTime<Utc>) -> i64 {
        // Only an estimate is needed, so the UTC date will do at the very ends of time.
        let local_date = local_time(self.time_zone, at).unwrap_or(at.naive_utc()).date();
        let elapsed_days = (local_date - self.first_handoff_date).num_days();
        let mut shift_index = elapsed_days.div_euclid(self.period_days());
        // The estimate is off by at most one: on a handoff day before the handoff time, or when a
        // DST gap moved the handoff past midnight.
        while self.handoff(shift_index).is_some_and(|handoff| handoff > at) {
            shift_index -= 1;
        }
        while let Some(next_handoff) = self.handoff(shift_index + 1)
            && next_handoff <= at
        {
            shift_index += 1;
        }
        shift_index
    }

    /// The UTC instant shift k starts at, or None outside chrono's calendar.
    fn handoff(&self, shift_index: i64) -> Option<DateTime<Utc>> {
        let offset = TimeDelta::try_days(shift_index.checked_mul(self.period_days())?)?;
        let date = self.first_handoff_date.checked_add_signed(offset)?;
        Some(resolve_local(self.time_zone, date.and_time(self.handoff_time)))
    }
}

/// Narrows [from, until) around `at` to where none of `overrides` takes over. None of them may
/// cover `at` itself, so each one lies wholly before `at` (and may push `from` later) or wholly
/// after it (and may pull `until` earlier).
fn cut_around(
    overrides: &[Override],
    at: DateTime<Utc>,
    mut from: DateTime<Utc>,
    mut until: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    for entry in overrides {
        if entry.until <= at {
            from = from.max(entry.until);
        } else if entry.from > at {
            until = until.min(entry.from);
        }
    }
    (from, until)
}

/// A local wall-clock time as a UTC instant: an ambiguous time (fall-back) takes the earlier
/// instant, a time that does not exist (spring-forward) the first valid instant after it.
fn resolve_local(time_zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match time_zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => instant.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => first_instant_after_gap(time_zone, local),
    }
}

/// The wall-clock time at `instant`, or None past the ends of chrono's calendar (where
/// `DateTime::naive_local` would panic).
fn local_time(time_zone: Tz, instant: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = time_zone.offset_from_utc_datetime(&instant.naive_utc()).fix();
    instant.naive_utc().checked_add_offset(offset)
}

/// The first instant whose local time is past `local`, which sits in a DST gap: that is the
/// transition instant, where the clock jumps over `local`.
fn first_instant_after_gap(time_zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // UTC offsets stay within ±1 day and gaps are at most a day long, so the transition lies
    // within two days of `local` read as UTC. Local time only rises in that window (a fall-back
    // within two days of a spring-forward does not happen), so bisecting on seconds is exact.
    let is_past = |timestamp: i64| {
        DateTime::from_timestamp(timestamp, 0)
            .and_then(|instant| local_time(time_zone, instant))
            .is_some_and(|instant_local| instant_local > local)
    };
    let two_days = 2 * 24 * 60 * 60;
    let mut before = local.and_utc().timestamp() - two_days;
    let mut after = local.and_utc().timestamp() + two_days;
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if is_past(middle) {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::from_timestamp(after, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn schedule(text: &str) -> Schedule {
        let config: ScheduleConfig = SourceFile::new("t.toml", text).parse().unwrap();
        Schedule::from_config(&config).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn rotation(person: &str, from: &str, until: &str) -> Shift {
        Shift { person: Person::parse(person).unwrap(), from: utc(from), until: utc(until), is_override: false }
    }

    /// Who `schedule` has on call at `at` is `expected`.
    #[track_caller]
    fn on_call_is(schedule: &Schedule, at: &str, expected: Shift) {
        assert_eq!(schedule.on_call(utc(at)), expected, "on call at {at}");
    }

    /// The shift after the one at `at` is `expected`.
    #[track_caller]
    fn next_is(schedule: &Schedule, at: &str, expected: Shift) {
        assert_eq!(schedule.next(utc(at)), expected, "next after {at}");
    }

    fn covering(person: &str, from: &str, until: &str) -> Shift {
        Shift { is_override: true, ..rotation(person, from, until) }
    }

    const WEEKLY_UTC: &str = r#"
name = "primary"
rotation = "weekly"
handoff = "Mon 09:00"
timezone = "UTC"
members = ["slack:U1", "slack:U2", "slack:U3"]
start = "2026-01-05"
"#;

    #[test]
    fn weekly_rotation_hands_off_every_monday_at_the_handoff_time() {
        let primary = schedule(WEEKLY_UTC);
        assert_eq!(primary.name(), "primary");
        let first = rotation("slack:U1", "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z");
        let second = rotation("slack:U2", "2026-01-12T09:00:00Z", "2026-01-19T09:00:00Z");
        let third = rotation("slack:U3", "2026-01-19T09:00:00Z", "2026-01-26T09:00:00Z");
        let fourth = rotation("slack:U1", "2026-01-26T09:00:00Z", "2026-02-02T09:00:00Z");
        assert_eq!(primary.on_call(utc("2026-01-05T09:00:00Z")), first);
        assert_eq!(primary.on_call(utc("2026-01-08T17:30:00Z")), first);
        assert_eq!(primary.on_call(utc("2026-01-12T08:59:59Z")), first);
        assert_eq!(primary.on_call(utc("2026-01-12T09:00:00Z")), second);
        assert_eq!(primary.on_call(utc("2026-01-25T23:00:00Z")), third);
        assert_eq!(primary.on_call(utc("2026-01-26T09:00:00Z")), fourth);
        assert_eq!(primary.next(utc("2026-01-08T17:30:00Z")), second);
        assert_eq!(primary.next(utc("2026-01-20T00:00:00Z")), fourth);
    }

    #[test]
    fn daily_rotation_hands_off_every_day() {
        let daily = schedule(
            r#"
name = "daily"
rotation = "daily"
handoff = "08:00"
timezone = "UTC"
members = ["slack:A", "discord:B"]
start = "2026-05-01"
"#,
        );
        on_call_is(&daily, "2026-05-01T08:00:00Z", rotation("slack:A", "2026-05-01T08:00:00Z", "2026-05-02T08:00:00Z"));
        on_call_is(&daily, "2026-05-02T07:59:59Z", rotation("slack:A", "2026-05-01T08:00:00Z", "2026-05-02T08:00:00Z"));
        on_call_is(
            &daily,
            "2026-05-02T08:00:00Z",
            rotation("discord:B", "2026-05-02T08:00:00Z", "2026-05-03T08:00:00Z"),
        );
        on_call_is(&daily, "2026-05-03T12:00:00Z", rotation("slack:A", "2026-05-03T08:00:00Z", "2026-05-04T08:00:00Z"));
        next_is(&daily, "2026-05-03T12:00:00Z", rotation("discord:B", "2026-05-04T08:00:00Z", "2026-05-05T08:00:00Z"));
    }

    #[test]
    fn before_the_first_handoff_the_previous_cycle_counts_backwards() {
        // 2026-01-01 is a Thursday, so the first handoff is Monday 2026-01-05.
        let primary = schedule(&WEEKLY_UTC.replace("2026-01-05", "2026-01-01"));
        on_call_is(
            &primary,
            "2026-01-05T09:00:00Z",
            rotation("slack:U1", "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"),
        );
        on_call_is(
            &primary,
            "2026-01-05T08:59:59Z",
            rotation("slack:U3", "2025-12-29T09:00:00Z", "2026-01-05T09:00:00Z"),
        );
        on_call_is(
            &primary,
            "2026-01-02T00:00:00Z",
            rotation("slack:U3", "2025-12-29T09:00:00Z", "2026-01-05T09:00:00Z"),
        );
        on_call_is(
            &primary,
            "2025-12-23T00:00:00Z",
            rotation("slack:U2", "2025-12-22T09:00:00Z", "2025-12-29T09:00:00Z"),
        );
        on_call_is(
            &primary,
            "2025-12-16T00:00:00Z",
            rotation("slack:U1", "2025-12-15T09:00:00Z", "2025-12-22T09:00:00Z"),
        );
        on_call_is(
            &primary,
            "2025-12-09T00:00:00Z",
            rotation("slack:U3", "2025-12-08T09:00:00Z", "2025-12-15T09:00:00Z"),
        );
        next_is(&primary, "2026-01-02T00:00:00Z", rotation("slack:U1", "2026-01-05T09:00:00Z", "2026-01-12T09:00:00Z"));
    }

    #[test]
    fn without_a_start_shifts_count_from_2024_01_01() {
        let primary = schedule(&WEEKLY_UTC.replace("start = \"2026-01-05\"", ""));
        // 2024-01-01 to 2026-03-02 is 791 days, 113 weeks: shift 113 belongs to members[113 % 3 = 2].
        on_call_is(
            &primary,
            "2026-03-04T00:00:00Z",
            rotation("slack:U3", "2026-03-02T09:00:00Z", "2026-03-09T09:00:00Z"),
        );
        // Far from the start the answer is still arithmetic, not a walk: a Monday-09:00 week that
        // contains the instant.
        let far = utc("9999-06-15T12:00:00Z");
        let shift = primary.on_call(far);
        assert!(shift.from <= far && far < shift.until, "{shift:?}");
        assert_eq!(shift.until - shift.from, TimeDelta::days(7));
        assert_eq!(
            (shift.from.weekday(), shift.from.time()),
            (chrono::Weekday::Mon, NaiveTime::from_hms_opt(9, 0, 0).unwrap())
        );
    }

    #[test]
    fn weekly_berlin_handoff_keeps_local_time_across_dst() {
        let berlin = schedule(
            r#"
name = "berlin"
rotation = "weekly"
handoff = "Mon 09:00"
timezone = "Europe/Berlin"
members = ["slack:A", "slack:B"]
start = "2026-03-23"
"#,
        );
        // 09:00 CET is 08:00 UTC; after the spring-forward on 2026-03-29, 09:00 CEST is 07:00 UTC.
        let before_spring = rotation("slack:A", "2026-03-23T08:00:00Z", "2026-03-30T07:00:00Z");
        assert_eq!(berlin.on_call(utc("2026-03-30T06:59:59Z")), before_spring);
        assert_eq!(before_spring.until - before_spring.from, TimeDelta::hours(167));
        on_call_is(
            &berlin,
            "2026-03-30T07:30:00Z",
            rotation("slack:B", "2026-03-30T07:00:00Z", "2026-04-06T07:00:00Z"),
        );
        // Fall-back on 2026-10-25: the handoff returns to 08:00 UTC, a 169-hour week.
        let across_fall = rotation("slack:A", "2026-10-19T07:00:00Z", "2026-10-26T08:00:00Z");
        assert_eq!(berlin.on_call(utc("2026-10-26T07:30:00Z")), across_fall);
        assert_eq!(across_fall.until - across_fall.from, TimeDelta::hours(169));
        next_is(&berlin, "2026-10-26T07:30:00Z", rotation("slack:B", "2026-10-26T08:00:00Z", "2026-11-02T08:00:00Z"));
    }

    #[test]
    fn daily_berlin_shift_is_23_hours_at_spring_forward_and_25_at_fall_back() {
        let text = r#"
name = "berlin"
rotation = "daily"
handoff = "09:00"
timezone = "Europe/Berlin"
members = ["slack:A", "slack:B", "slack:C"]
start = "2026-03-28"
"#;
        let spring = schedule(text);
        let short = rotation("slack:A", "2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z");
        assert_eq!(spring.on_call(utc("2026-03-29T06:59:59Z")), short);
        assert_eq!(short.until - short.from, TimeDelta::hours(23));
        on_call_is(
            &spring,
            "2026-03-29T07:00:00Z",
            rotation("slack:B", "2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"),
        );

        let fall = schedule(&text.replace("2026-03-28", "2026-10-24"));
        let long = rotation("slack:A", "2026-10-24T07:00:00Z", "2026-10-25T08:00:00Z");
        assert_eq!(fall.on_call(utc("2026-10-25T07:30:00Z")), long);
        assert_eq!(long.until - long.from, TimeDelta::hours(25));
        next_is(&fall, "2026-10-25T07:30:00Z", rotation("slack:B", "2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z"));
    }

    #[test]
    fn a_missing_handoff_moves_to_the_first_valid_instant_and_an_ambiguous_one_takes_the_earlier() {
        let text = r#"
name = "night"
rotation = "daily"
handoff = "02:30"
timezone = "Europe/Berlin"
members = ["slack:A", "slack:B"]
start = "2026-03-28"
"#;
        // 2026-03-29 02:30 does not exist in Berlin; the clock jumps from 02:00 CET to 03:00 CEST
        // at 01:00 UTC, which is where the handoff happens.
        let spring = schedule(text);
        on_call_is(
            &spring,
            "2026-03-29T00:59:59Z",
            rotation("slack:A", "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z"),
        );
        on_call_is(
            &spring,
            "2026-03-29T01:00:00Z",
            rotation("slack:B", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
        );

        // 2026-10-25 02:30 happens twice (CEST, then CET); the handoff takes the first, 00:30 UTC.
        let fall = schedule(&text.replace("2026-03-28", "2026-10-24"));
        on_call_is(&fall, "2026-10-25T00:29:59Z", rotation("slack:A", "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"));
        on_call_is(&fall, "2026-10-25T00:30:00Z", rotation("slack:B", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"));
    }

    #[test]
    fn a_skipped_calendar_day_hands_off_when_the_clock_lands() {
        // Samoa skipped 2011-12-30 entirely: 23:59:59 on the 29th (UTC-10) was followed by 00:00
        // on the 31st (UTC+14), at 10:00 UTC on the 30th.
        let apia = schedule(
            r#"
name = "apia"
rotation = "daily"
handoff = "09:00"
timezone = "Pacific/Apia"
members = ["slack:A", "slack:B", "slack:C", "slack:D"]
start = "2011-12-28"
"#,
        );
        on_call_is(&apia, "2011-12-30T09:00:00Z", rotation("slack:B", "2011-12-29T19:00:00Z", "2011-12-30T10:00:00Z"));
        on_call_is(&apia, "2011-12-30T10:00:00Z", rotation("slack:C", "2011-12-30T10:00:00Z", "2011-12-30T19:00:00Z"));
        next_is(&apia, "2011-12-30T10:00:00Z", rotation("slack:D", "2011-12-30T19:00:00Z", "2011-12-31T19:00:00Z"));
    }

    const WITH_OVERRIDES: &str = r#"
overrides = [
  { start = "2026-01-07T01:00:00+01:00", end = "2026-01-09T00:00:00Z", person = "slack:X" },
  { start = "2026-01-08T12:00:00Z", end = "2026-01-13T00:00:00Z", person = "slack:Y" },
  { start = "2026-01-20T00:00:00Z", end = "2026-01-23T00:00:00Z", person = "slack:Z" },
  { start = "2026-01-21T00:00:00Z", end = "2026-01-22T00:00:00Z", person = "slack:W" },
]
"#;

    #[test]
    fn an_override_wins_from_its_start_until_its_end() {
        let primary = schedule(&format!("{WEEKLY_UTC}{WITH_OVERRIDES}"));
        // The rotation shift is cut where the first override takes over.
        on_call_is(
            &primary,
            "2026-01-06T23:59:59Z",
            rotation("slack:U1", "2026-01-05T09:00:00Z", "2026-01-07T00:00:00Z"),
        );
        // The start is inclusive (01:00+01:00 is 00:00 UTC); the window is cut where Y takes over.
        let covered_by_x = covering("slack:X", "2026-01-07T00:00:00Z", "2026-01-08T12:00:00Z");
        assert_eq!(primary.on_call(utc("2026-01-07T00:00:00Z")), covered_by_x);
        assert_eq!(primary.on_call(utc("2026-01-08T11:59:59Z")), covered_by_x);
        // Y's override runs across the Monday handoff; the end is exclusive and the rotation
        // resumes with whoever it has then (U2), from the override's end.
        let covered_by_y = covering("slack:Y", "2026-01-08T12:00:00Z", "2026-01-13T00:00:00Z");
        assert_eq!(primary.on_call(utc("2026-01-12T09:00:00Z")), covered_by_y);
        assert_eq!(primary.on_call(utc("2026-01-12T23:59:59Z")), covered_by_y);
        on_call_is(
            &primary,
            "2026-01-13T00:00:00Z",
            rotation("slack:U2", "2026-01-13T00:00:00Z", "2026-01-19T09:00:00Z"),
        );
    }

    #[test]
    fn overlapping_overrides_the_later_entry_wins() {
        let primary = schedule(&format!("{WEEKLY_UTC}{WITH_OVERRIDES}"));
        // X (earlier) and Y (later) overlap from 2026-01-08 12:00 to 2026-01-09 00:00: Y has it.
        assert_eq!(primary.on_call(utc("2026-01-08T18:00:00Z")).person, Person::parse("slack:Y").unwrap());
        // W (later) sits inside Z (earlier): Z, then W, then Z again until Z's end.
        on_call_is(
            &primary,
            "2026-01-20T12:00:00Z",
            covering("slack:Z", "2026-01-20T00:00:00Z", "2026-01-21T00:00:00Z"),
        );
        on_call_is(
            &primary,
            "2026-01-21T00:00:00Z",
            covering("slack:W", "2026-01-21T00:00:00Z", "2026-01-22T00:00:00Z"),
        );
        on_call_is(
            &primary,
            "2026-01-22T00:00:00Z",
            covering("slack:Z", "2026-01-22T00:00:00Z", "2026-01-23T00:00:00Z"),
        );
        on_call_is(
            &primary,
            "2026-01-23T00:00:00Z",
            rotation("slack:U3", "2026-01-23T00:00:00Z", "2026-01-26T09:00:00Z"),
        );

        // The other way round, the earlier entry inside the later one never shows.
        let reversed = schedule(&format!(
            "{WEEKLY_UTC}{}",
            r#"overrides = [
  { start = "2026-01-21T00:00:00Z", end = "2026-01-22T00:00:00Z", person = "slack:W" },
  { start = "2026-01-20T00:00:00Z", end = "2026-01-23T00:00:00Z", person = "slack:Z" },
]"#
        ));
        on_call_is(
            &reversed,
            "2026-01-21T12:00:00Z",
            covering("slack:Z", "2026-01-20T00:00:00Z", "2026-01-23T00:00:00Z"),
        );
    }

    #[test]
    fn next_during_an_override_and_at_a_handoff() {
        let primary = schedule(&format!("{WEEKLY_UTC}{WITH_OVERRIDES}"));
        next_is(&primary, "2026-01-06T12:00:00Z", covering("slack:X", "2026-01-07T00:00:00Z", "2026-01-08T12:00:00Z"));
        next_is(&primary, "2026-01-07T12:00:00Z", covering("slack:Y", "2026-01-08T12:00:00Z", "2026-01-13T00:00:00Z"));
        // After an override ends, next is whoever the rotation has then.
        next_is(&primary, "2026-01-10T00:00:00Z", rotation("slack:U2", "2026-01-13T00:00:00Z", "2026-01-19T09:00:00Z"));
        // At a handoff instant, the shift in force is the new one, so next is the one after it.
        next_is(&primary, "2026-01-19T09:00:00Z", covering("slack:Z", "2026-01-20T00:00:00Z", "2026-01-21T00:00:00Z"));
        next_is(&primary, "2026-01-26T09:00:00Z", rotation("slack:U2", "2026-02-02T09:00:00Z", "2026-02-09T09:00:00Z"));
    }

    #[test]
    fn a_single_member_is_always_on_call_shift_after_shift() {
        let solo = schedule(
            r#"
name = "solo"
rotation = "daily"
handoff = "09:00"
timezone = "UTC"
members = ["console:alice"]
"#,
        );
        on_call_is(
            &solo,
            "2023-06-01T12:00:00Z",
            rotation("console:alice", "2023-06-01T09:00:00Z", "2023-06-02T09:00:00Z"),
        );
        on_call_is(
            &solo,
            "2026-06-01T08:00:00Z",
            rotation("console:alice", "2026-05-31T09:00:00Z", "2026-06-01T09:00:00Z"),
        );
        next_is(
            &solo,
            "2026-06-01T08:00:00Z",
            rotation("console:alice", "2026-06-01T09:00:00Z", "2026-06-02T09:00:00Z"),
        );
    }

    #[test]
    fn bad_config_is_an_error_not_a_panic() {
        let error_for = |text: &str| {
            let config: ScheduleConfig = SourceFile::new("t.toml", text).parse().unwrap();
            Schedule::from_config(&config).unwrap_err()
        };
        let error = error_for(&WEEKLY_UTC.replace("\"UTC\"", "\"Mars/Olympus\""));
        assert!(error.contains("schedules.primary.timezone: unknown time zone 'Mars/Olympus'"), "{error}");
        let error = error_for(&WEEKLY_UTC.replace("Mon 09:00", "Someday 09:00"));
        assert!(error.contains("schedules.primary.handoff: 'Someday' is not a weekday"), "{error}");
        let error = error_for(&WEEKLY_UTC.replace("2026-01-05", "January"));
        assert!(error.contains("schedules.primary.start: 'January' is not a date"), "{error}");
        let error = error_for(&WEEKLY_UTC.replace(r#"["slack:U1", "slack:U2", "slack:U3"]"#, "[]"));
        assert!(error.contains("schedules.primary: needs at least one member"), "{error}");
        let error = error_for(&format!(
            "{WEEKLY_UTC}{}",
            r#"overrides = [ { start = "2026-01-09T00:00:00Z", end = "2026-01-08T00:00:00Z", person = "slack:X" } ]"#
        ));
        assert!(error.contains("the override for slack:X ends (2026-01-08T00:00:00Z) before it starts"), "{error}");
        let error = error_for(&format!(
            "{WEEKLY_UTC}{}",
            r#"overrides = [ { start = "soon", end = "2026-01-08T00:00:00Z", person = "slack:X" } ]"#
        ));
        assert!(error.contains("'soon' is not an RFC 3339 time"), "{error}");
    }

    #[test]
    fn a_shift_serializes_with_the_person_as_written_in_config() {
        let primary = schedule(WEEKLY_UTC);
        let json = serde_json::to_value(primary.on_call(utc("2026-01-06T00:00:00Z"))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "person": "slack:U1",
                "from": "2026-01-05T09:00:00Z",
                "until": "2026-01-12T09:00:00Z",
                "is_override": false,
            })
        );
    }

    #[test]
    fn the_ends_of_time_do_not_panic() {
        let berlin = schedule(&WEEKLY_UTC.replace("\"UTC\"", "\"Europe/Berlin\""));
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let shift = berlin.on_call(at);
            assert!(shift.from <= at && at <= shift.until, "{shift:?}");
            berlin.next(at);
        }
    }
}
