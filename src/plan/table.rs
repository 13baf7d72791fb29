//! The plan as the table `plan` prints by default: one line per change (local time in the
//! schedule's zone, UTC, the object, its instance, the state, why), then the instances where
//! nothing changes, grouped by why.

use std::fmt::Write as _;

use super::{PlanReport, Unchanged, UnchangedState};
use crate::schedule::preview::{local, utc};

/// The plan of the objects in `scope` (`namespace shop`, `all namespaces`, a file's name).
pub(crate) fn render(report: &PlanReport, scope: &str) -> String {
    let mut out = format!(
        "Power changes of the EcsInstances in {scope}, after {} until {}: {}\n",
        utc(report.from),
        utc(report.until),
        report.changes.len()
    );
    if !report.changes.is_empty() {
        out.push('\n');
        let table: Vec<[String; 6]> = std::iter::once(
            ["LOCAL", "UTC", "ECSINSTANCE", "INSTANCE", "STATE", "WHY"].map(String::from),
        )
        .chain(report.changes.iter().map(|c| {
            [
                local(&c.zone, c.time),
                utc(c.time),
                format!("{}/{}", c.namespace, c.name),
                c.instance_id.clone(),
                c.power_state.as_str().to_string(),
                c.why.clone(),
            ]
        }))
        .collect();
        let width = |col: usize| table.iter().map(|r| r[col].chars().count()).max();
        let widths: Vec<usize> = (0..5).map(|col| width(col).unwrap_or(0)).collect();
        for row in &table {
            for (cell, w) in row.iter().zip(&widths) {
                let _ = write!(out, "{cell:w$}  ");
            }
            let _ = writeln!(out, "{}", row[5]);
        }
    }
    let of = |state: UnchangedState| -> Vec<&Unchanged> {
        report
            .unchanged
            .iter()
            .filter(|u| u.state == state)
            .collect()
    };
    let stuck: Vec<&Unchanged> = [UnchangedState::Stalled, UnchangedState::Paused]
        .into_iter()
        .flat_map(of)
        .collect();
    if !stuck.is_empty() {
        let _ = writeln!(
            out,
            "\nNothing will happen until a person acts ({}):",
            stuck.len()
        );
        for u in stuck {
            let label = match u.state {
                UnchangedState::Stalled => format!("Stalled ({})", u.reason),
                _ => u.reason.clone(),
            };
            let _ = writeln!(
                out,
                "  {}/{}  {}  {label}: {}",
                u.namespace, u.name, u.instance_id, u.message
            );
        }
    }
    let steady = of(UnchangedState::Steady);
    if !steady.is_empty() {
        let _ = writeln!(out, "\nNo change in this range ({}):", steady.len());
        for u in steady {
            let next = match &u.next {
                Some(n) => format!("; next: {} at {}", n.power_state.as_str(), utc(n.time)),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  {}/{}  {}  {}{next}",
                u.namespace, u.name, u.instance_id, u.message
            );
        }
    }
    let fixed = of(UnchangedState::Fixed);
    if !fixed.is_empty() {
        let names: Vec<String> = fixed
            .iter()
            .map(|u| format!("{}/{}", u.namespace, u.name))
            .collect();
        let _ = writeln!(
            out,
            "\nA fixed spec.powerState, no change ({}): {}",
            fixed.len(),
            names.join(", ")
        );
    }
    out
}
