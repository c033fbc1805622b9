//! A node's last days of use as a bar chart, drawn here as SVG geometry (CONTRACTS.md
//! §4.8: no script library, nothing the page's policy refuses: attributes, no inline
//! style). Each bar carries its day and bytes, so a reader (or a test) can tell exactly
//! what it shows.

use domain::usage::DayUsage;

use super::gb;

/// The chart's drawing box, in SVG units (and CSS pixels, at most).
const WIDTH: u32 = 300;
const HEIGHT: u32 = 60;
/// Space between bars.
const GAP: f64 = 2.0;

/// One day's bar.
pub struct Bar {
    pub date: String,
    pub bytes: i64,
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// What a hover (and a screen reader) says.
    pub label: String,
}

pub struct Chart {
    pub width: u32,
    pub height: u32,
    /// How many days it spans.
    pub days: usize,
    pub bars: Vec<Bar>,
    /// The busiest day's use, the scale's top.
    pub peak: String,
    pub first: String,
    pub last: String,
}

/// Bars for `days` (oldest first), scaled to the busiest day; a day without use has a bar
/// of height 0, so every day is there.
pub fn bars(days: &[DayUsage]) -> Chart {
    let total = |d: &DayUsage| d.rx_bytes.max(0).saturating_add(d.tx_bytes.max(0));
    let peak = days.iter().map(total).max().unwrap_or(0);
    let slot = f64::from(WIDTH) / days.len().max(1) as f64;
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let bytes = total(d);
            let h = if peak > 0 {
                bytes as f64 / peak as f64 * f64::from(HEIGHT)
            } else {
                0.0
            };
            Bar {
                date: d.date.to_string(),
                bytes,
                x: format!("{:.2}", i as f64 * slot + GAP / 2.0),
                y: format!("{:.2}", f64::from(HEIGHT) - h),
                width: format!("{:.2}", (slot - GAP).max(1.0)),
                height: format!("{h:.2}"),
                label: format!("{}: {} GB", d.date, gb(bytes)),
            }
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        days: days.len(),
        bars,
        peak: gb(peak),
        first: days.first().map(|d| d.date.to_string()).unwrap_or_default(),
        last: days.last().map(|d| d.date.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(n: u32, rx: i64, tx: i64) -> DayUsage {
        DayUsage {
            date: NaiveDate::from_ymd_opt(2026, 12, n).unwrap(),
            rx_bytes: rx,
            tx_bytes: tx,
        }
    }

    #[test]
    fn bars_are_scaled_to_the_busiest_day_and_every_day_has_one() {
        let gib = domain::units::GIB;
        let chart = bars(&[day(1, gib, gib), day(2, 0, 0), day(3, gib, 0)]);
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(
            chart.bars[0].height, "60.00",
            "the busiest day fills the box"
        );
        assert_eq!(chart.bars[0].y, "0.00");
        assert_eq!(chart.bars[1].height, "0.00");
        assert_eq!(chart.bars[2].height, "30.00");
        assert_eq!(chart.bars[2].bytes, gib);
        assert_eq!(chart.bars[1].x, "101.00");
        assert_eq!(chart.bars[0].label, "2026-12-01: 2 GB");
        assert_eq!(
            (
                chart.peak.as_str(),
                chart.first.as_str(),
                chart.last.as_str()
            ),
            ("2", "2026-12-01", "2026-12-03")
        );
    }

    #[test]
    fn a_node_without_use_draws_flat_bars() {
        let chart = bars(&[day(1, 0, 0), day(2, -5, 0)]);
        assert!(
            chart
                .bars
                .iter()
                .all(|b| b.height == "0.00" && b.bytes == 0)
        );
        assert!(bars(&[]).bars.is_empty());
    }
}
