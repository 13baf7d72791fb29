//! The `schedule preview` table: the coming transitions in local time and UTC, with the
//! zone's own DST changes and the exception days in between. Pure: text (or, for `-o json`,
//! a [`report::PreviewReport`](super::report::PreviewReport)) from a schedule and a time
//! range, so it is tested without a terminal.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::{Schedule, Shift, Transition};

/// One line of the table.
pub(crate) struct Row {
    pub(crate) at: Timestamp,
    pub(crate) state: &'static str,
    pub(crate) why: String,
    pub(crate) kind: RowKind,
}

/// What a line of the preview shows.
pub(crate) enum RowKind {
    Transition(Transition),
    /// The zone's offset changes (no power change).
    DaylightSaving,
    /// An exception day that begins in the state it holds (no power change).
    QuietException,
}

/// The lines of the preview of `schedule` over `(from, until]`, in order.
pub(crate) fn rows(schedule: &Schedule, from: Timestamp, until: Timestamp) -> Vec<Row> {
    let mut rows: Vec<Row> = schedule
        .transitions(from, until)
        .map(|t| Row {
            at: t.at,
            state: t.power_state.as_str(),
            why: why(&t),
            kind: RowKind::Transition(t),
        })
        .collect();
    let quiet_exceptions = quiet_exception_days(schedule, from, until, &rows);
    rows.extend(quiet_exceptions);
    rows.extend(dst_changes(schedule.zone(), from, until));
    // A DST change and a transition at the same instant: the DST line first.
    rows.sort_by_key(|r| (r.at, r.state != "-"));
    rows
}

/// The preview of `schedule` (named `name`) over `(from, until]`.
pub fn render(schedule: &Schedule, name: &str, from: Timestamp, until: Timestamp) -> String {
    let zone = schedule.zone();
    let rows = rows(schedule, from, until);

    let mut out = format!(
        "EcsPowerSchedule {name} ({}): {} now, at {}\n",
        schedule.zone_name(),
        schedule.state_at(from).as_str(),
        local(zone, from),
    );
    if rows.is_empty() {
        out.push_str(&format!(
            "No transition until {}{}.\n",
            local(zone, until),
            match schedule.next_transition(until) {
                Some(next) => format!(
                    "; the next: {} at {}",
                    next.power_state.as_str(),
                    local(zone, next.at)
                ),
                None => String::from("; the state never changes"),
            }
        ));
        return out;
    }
    out.push_str(&format!("Until {}:\n\n", local(zone, until)));
    let table: Vec<[String; 4]> =
        std::iter::once(["LOCAL", "UTC", "STATE", "WHY"].map(String::from))
            .chain(rows.iter().map(|r| {
                [
                    local(zone, r.at),
                    utc(r.at),
                    r.state.to_string(),
                    r.why.clone(),
                ]
            }))
            .collect();
    let width = |col: usize| {
        table
            .iter()
            .map(|r| r[col].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    for row in &table {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        ));
    }
    out
}

/// `Fri 2026-03-27 08:00 CET (+01:00)`
pub(crate) fn local(zone: &TimeZone, at: Timestamp) -> String {
    at.to_zoned(zone.clone())
        .strftime("%a %Y-%m-%d %H:%M %Z (%:z)")
        .to_string()
}

/// `2026-03-27 07:00Z`
pub(crate) fn utc(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%MZ").to_string()
}

/// What a transition's cause says, e.g. `running[0] closes`, with a DST shift's note.
pub(crate) fn why(t: &Transition) -> String {
    let mut text = t.cause.to_string();
    match t.shift {
        Some(Shift::Gap { wall, by }) => text.push_str(&format!(
            "; {} is skipped by the DST change: moved {} later",
            wall.strftime("%H:%M"),
            duration(by)
        )),
        Some(Shift::Fold { wall }) => text.push_str(&format!(
            "; {} happens twice (DST ends): the first",
            wall.strftime("%H:%M")
        )),
        None => {}
    }
    text
}

/// Exception days in `(from, until]` that begin without a transition (the state already was
/// the exception's): listed anyway, so the table shows every exception in its range.
fn quiet_exception_days(
    schedule: &Schedule,
    from: Timestamp,
    until: Timestamp,
    transitions: &[Row],
) -> Vec<Row> {
    schedule
        .exceptions
        .range(schedule.date_of(from)..=schedule.date_of(until))
        .filter_map(|(date, day)| {
            let at = schedule.day_start(*date)?;
            let quiet = from < at && at <= until && !transitions.iter().any(|r| r.at == at);
            quiet.then(|| Row {
                at,
                state: "-",
                kind: RowKind::QuietException,
                why: format!(
                    "{}: {} all day, as it already was",
                    day.cause(*date, false),
                    day.power_state.as_str()
                ),
            })
        })
        .collect()
}

/// The zone's offset changes in `(from, until]`.
fn dst_changes(zone: &TimeZone, from: Timestamp, until: Timestamp) -> Vec<Row> {
    zone.following(from)
        .take_while(|t| t.timestamp() <= until)
        .filter_map(|t| {
            let at = t.timestamp();
            let before = zone.to_offset_info(at.checked_sub(SignedDuration::from_secs(1)).ok()?);
            let change = t.offset().duration_since(before.offset());
            let direction = if change.is_negative() {
                "back"
            } else {
                "forward"
            };
            Some(Row {
                at,
                state: "-",
                kind: RowKind::DaylightSaving,
                why: format!(
                    "DST: clocks go {direction} {} ({} {} to {} {})",
                    duration(change.abs()),
                    before.abbreviation(),
                    before.offset(),
                    t.abbreviation(),
                    t.offset(),
                ),
            })
        })
        .collect()
}

/// `1h`, `30m`, `1h30m`.
fn duration(d: SignedDuration) -> String {
    let minutes = d.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (h, 0) => format!("{h}h"),
        (0, m) => format!("{m}m"),
        (h, m) => format!("{h}h{m}m"),
    }
}
