//! Traffic by period (CONTRACTS.md §4.8). A hosting node's allowance is so much transfer a
//! calendar month (UTC), so what it used is counted per month, beside the all-time count;
//! `NODE_TRAFFIC_PERIOD=none` shows the all-time count instead. Usage is also kept by day,
//! for the charts: a report counts on the UTC day it was taken (its `reported_at`, so a
//! report taken before midnight and delivered after counts on the day before), and in that
//! day's month. The daily rows of a month add up to the month's tally because both are
//! written from the same growth in the same transaction.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Utc};

use crate::input::InputError;
use crate::{Resource, ResourceKind};

/// How a node's usage is counted against its allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeriodPolicy {
    /// The calendar month in UTC (the hosting providers' bundles are monthly).
    #[default]
    Month,
    /// All time (the deployed service's count).
    None,
}

impl PeriodPolicy {
    /// The names `NODE_TRAFFIC_PERIOD` takes.
    pub const NAMES: [(&'static str, PeriodPolicy); 2] =
        [("month", PeriodPolicy::Month), ("none", PeriodPolicy::None)];

    /// The period `at` falls in; `None` when usage is counted for all time.
    pub fn period(self, at: DateTime<Utc>) -> Option<Period> {
        match self {
            PeriodPolicy::Month => Some(Period::month_of(day_of(at))),
            PeriodPolicy::None => None,
        }
    }
}

/// Whether a VPN renewal also sets the account's usage back to 0 at the VPN manager
/// (`VPN_TRAFFIC_RESET`). The deployed service never did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VpnTrafficReset {
    #[default]
    Never,
    /// A paid order (Stripe's or an app store's) that starts a new period on a live
    /// account (a renewal or a plan change; never a repeated delivery, a gift or a trial).
    OnRenewal,
}

impl VpnTrafficReset {
    /// The names `VPN_TRAFFIC_RESET` takes.
    pub const NAMES: [(&'static str, VpnTrafficReset); 2] = [
        ("never", VpnTrafficReset::Never),
        ("on_renewal", VpnTrafficReset::OnRenewal),
    ];
}

/// A counting period: from `start` (included) to `end` (excluded), whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub first_day: NaiveDate,
    /// The first day after the period.
    pub end_day: NaiveDate,
}

impl Period {
    /// The calendar month `day` is in.
    pub fn month_of(day: NaiveDate) -> Period {
        let first_day = day.with_day(1).unwrap_or(day);
        let end_day = first_day
            .checked_add_months(Months::new(1))
            .unwrap_or(NaiveDate::MAX);
        Period { first_day, end_day }
    }

    pub fn start(&self) -> DateTime<Utc> {
        midnight(self.first_day)
    }

    pub fn end(&self) -> DateTime<Utc> {
        midnight(self.end_day)
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// The UTC day `at` falls on.
pub fn day_of(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// What a node used in one period, as stored beside its all-time count: the period's first
/// day names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub period_start: NaiveDate,
    pub used: i64,
}

/// Growth of a node's cumulative counters `(rx, tx)` since the last report (`None` before
/// the first, when the counters count in full). Per counter, a lower value is a reset (the
/// node rebooted) that counts in full. Stored nonsense (negative values) is floored at 0.
pub fn counter_growth(last: Option<(i64, i64)>, rx: i64, tx: i64) -> (i64, i64) {
    let grown = |now: i64, before: i64| {
        let (now, before) = (now.max(0), before.max(0));
        if now >= before { now - before } else { now }
    };
    let (last_rx, last_tx) = last.unwrap_or((0, 0));
    (grown(rx, last_rx), grown(tx, last_tx))
}

/// Everything a node report writes: its growth per direction (the day's row takes it), the
/// all-time count and the tally of the month it was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    pub rx: i64,
    pub tx: i64,
    pub all_time: i64,
    pub tally: Tally,
}

/// A report of cumulative counters `(rx, tx)` taken at `at`, given what was recorded: the
/// all-time count, the month's tally and the last report's counters. Sums saturate: no
/// report, however absurd, can make a count overflow.
pub fn meter_report(
    all_time: i64,
    tally: Option<Tally>,
    last: Option<(i64, i64)>,
    (rx, tx): (i64, i64),
    at: DateTime<Utc>,
) -> Metered {
    let (rx, tx) = counter_growth(last, rx, tx);
    let grown = rx.saturating_add(tx);
    Metered {
        rx,
        tx,
        all_time: all_time.max(0).saturating_add(grown),
        tally: tally_after(tally, at, grown),
    }
}

/// The tally after a report taken at `at` that grew the counters by `grown` bytes: the same
/// month adds to it, a new month starts from the growth alone. (A report older than the
/// last one recorded never gets here: it changes nothing.)
pub fn tally_after(before: Option<Tally>, at: DateTime<Utc>, grown: i64) -> Tally {
    let period_start = Period::month_of(day_of(at)).first_day;
    let used = match before {
        Some(t) if t.period_start == period_start => t.used.max(0).saturating_add(grown),
        _ => grown,
    };
    Tally { period_start, used }
}

/// What a node shows against its allowance at `now`: the current period's use (0 when the
/// node has not reported in it), or the all-time count when there is no period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub used: i64,
    pub period: Option<Period>,
}

pub fn shown(
    policy: PeriodPolicy,
    now: DateTime<Utc>,
    all_time: i64,
    tally: Option<Tally>,
) -> Shown {
    match policy.period(now) {
        None => self::all_time(all_time),
        Some(period) => Shown {
            used: tally
                .filter(|t| t.period_start == period.first_day)
                .map_or(0, |t| t.used.max(0)),
            period: Some(period),
        },
    }
}

/// How traffic figures are shown, and when: the policy and the moment of the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub policy: PeriodPolicy,
    pub now: DateTime<Utc>,
}

impl Meter {
    /// The period a read at `now` shows (`None`: all time).
    pub fn period(&self) -> Option<Period> {
        self.policy.period(self.now)
    }

    /// Its first day, as the store takes it.
    pub fn period_start(&self) -> Option<NaiveDate> {
        self.period().map(|p| p.first_day)
    }

    /// What a resource shows: a hosting node its period's use; a VPN account what the VPN
    /// manager counts (its own reset policy is `VPN_TRAFFIC_RESET`), with no period.
    pub fn shown(&self, r: &Resource) -> Shown {
        match r.kind {
            ResourceKind::HostingNode => shown(self.policy, self.now, r.traffic_used, r.tally),
            ResourceKind::VpnUser => all_time(r.traffic_used),
        }
    }
}

/// A count shown for all time (a VPN account's, or any under `NODE_TRAFFIC_PERIOD=none`).
pub fn all_time(used: i64) -> Shown {
    Shown {
        used: used.max(0),
        period: None,
    }
}

/// Days a usage window may span (`?days=`), and its default.
pub const MAX_WINDOW_DAYS: i64 = 90;
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

/// The last `days` UTC days up to and including `today`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl Window {
    pub fn ending(now: DateTime<Utc>, days: Option<i64>) -> Result<Window, InputError> {
        let days = days.unwrap_or(DEFAULT_WINDOW_DAYS);
        if !(1..=MAX_WINDOW_DAYS).contains(&days) {
            return Err(InputError::new(
                "invalid_days",
                format!("days must be a whole number from 1 to {MAX_WINDOW_DAYS}"),
            ));
        }
        let last_day = day_of(now);
        let first_day = last_day
            .checked_sub_days(Days::new(days as u64 - 1))
            .unwrap_or(NaiveDate::MIN);
        Ok(Window {
            first_day,
            last_day,
        })
    }

    /// Every day of the window, oldest first, with what `rows` (a day's bytes, any order,
    /// days outside the window ignored) say of it, and 0 for a day without a row.
    pub fn fill(&self, rows: &[DayUsage]) -> Vec<DayUsage> {
        self.first_day
            .iter_days()
            .take_while(|day| *day <= self.last_day)
            .map(|date| {
                rows.iter()
                    .find(|r| r.date == date)
                    .copied()
                    .unwrap_or(DayUsage {
                        date,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    })
            })
            .collect()
    }
}

/// A node's use on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayUsage {
    pub date: NaiveDate,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

/// The first day whose usage is still kept, `retention_days` back from `now`'s day.
pub fn kept_from(now: DateTime<Utc>, retention_days: u32) -> NaiveDate {
    day_of(now)
        .checked_sub_days(Days::new(u64::from(retention_days)))
        .unwrap_or(NaiveDate::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_month_runs_from_its_first_day_to_the_next_months() {
        let p = PeriodPolicy::Month
            .period(at("2026-12-06T10:00:00Z"))
            .unwrap();
        assert_eq!(p.start(), at("2026-12-01T00:00:00Z"));
        assert_eq!(p.end(), at("2027-01-01T00:00:00Z"), "across the year's end");
        let feb = Period::month_of(day("2028-02-29"));
        assert_eq!(
            (feb.first_day, feb.end_day),
            (day("2028-02-01"), day("2028-03-01"))
        );
        let jan = Period::month_of(day("2027-01-31"));
        assert_eq!(jan.end_day, day("2027-02-01"));
        assert_eq!(
            PeriodPolicy::Month
                .period(at("2026-11-30T23:59:59Z"))
                .unwrap()
                .first_day,
            day("2026-11-01"),
            "the last second is still the month's"
        );
        assert_eq!(PeriodPolicy::None.period(at("2026-12-06T10:00:00Z")), None);
    }

    #[test]
    fn a_month_by_default_and_each_policy_named_once() {
        assert_eq!(PeriodPolicy::default(), PeriodPolicy::Month);
        assert_eq!(VpnTrafficReset::default(), VpnTrafficReset::Never);
        let names = PeriodPolicy::NAMES.map(|(name, _)| name);
        assert_eq!(names, ["month", "none"]);
        let names = VpnTrafficReset::NAMES.map(|(name, _)| name);
        assert_eq!(names, ["never", "on_renewal"]);
    }

    #[test]
    fn counters_grow_reset_and_repeat() {
        assert_eq!(
            counter_growth(None, 100, 50),
            (100, 50),
            "the first counts in full"
        );
        assert_eq!(
            counter_growth(Some((100, 50)), 100, 50),
            (0, 0),
            "a repeat adds nothing"
        );
        assert_eq!(counter_growth(Some((100, 50)), 130, 60), (30, 10));
        assert_eq!(
            counter_growth(Some((130, 60)), 10, 70),
            (10, 10),
            "rx reset"
        );
        assert_eq!(
            counter_growth(Some((-5, 0)), -1, 3),
            (0, 3),
            "nonsense floored"
        );
        assert_eq!(
            counter_growth(Some((0, 0)), i64::MAX, i64::MAX),
            (i64::MAX, i64::MAX)
        );
    }

    #[test]
    fn a_report_adds_its_growth_to_the_count_the_month_and_the_day() {
        let taken = at("2026-12-06T10:00:00Z");
        let m = meter_report(150, None, Some((100, 50)), (130, 60), taken);
        assert_eq!((m.rx, m.tx, m.all_time), (30, 10, 190));
        assert_eq!(
            m.tally,
            Tally {
                period_start: day("2026-12-01"),
                used: 40
            }
        );
        let repeat = meter_report(190, Some(m.tally), Some((130, 60)), (130, 60), taken);
        assert_eq!(
            (repeat.rx + repeat.tx, repeat.all_time, repeat.tally.used),
            (0, 190, 40)
        );
        let absurd = meter_report(
            i64::MAX - 1,
            None,
            Some((0, 0)),
            (i64::MAX, i64::MAX),
            taken,
        );
        assert_eq!(
            (absurd.all_time, absurd.tally.used),
            (i64::MAX, i64::MAX),
            "saturates"
        );
        assert_eq!(
            meter_report(-5, None, None, (0, 3), taken).all_time,
            3,
            "nonsense floored"
        );
    }

    #[test]
    fn a_tally_adds_within_its_month_and_starts_over_in_the_next() {
        let nov = Tally {
            period_start: day("2026-11-01"),
            used: 500,
        };
        let t = tally_after(Some(nov), at("2026-11-30T23:59:00Z"), 20);
        assert_eq!(
            t,
            Tally {
                period_start: day("2026-11-01"),
                used: 520
            }
        );
        let t = tally_after(Some(t), at("2026-12-01T00:00:10Z"), 7);
        assert_eq!(
            t,
            Tally {
                period_start: day("2026-12-01"),
                used: 7
            },
            "a new month"
        );
        let t = tally_after(None, at("2027-01-01T00:00:00Z"), 3);
        assert_eq!(t.period_start, day("2027-01-01"));
        let full = Tally {
            period_start: day("2026-12-01"),
            used: i64::MAX - 1,
        };
        assert_eq!(
            tally_after(Some(full), at("2026-12-02T00:00:00Z"), 5).used,
            i64::MAX
        );
    }

    #[test]
    fn a_report_taken_before_midnight_counts_on_the_day_before() {
        // Taken at 23:59:30 on the last day of February of a leap year, delivered after
        // midnight: it counts on the 29th, and in February.
        let taken = at("2028-02-29T23:59:30Z");
        assert_eq!(day_of(taken), day("2028-02-29"));
        let feb = tally_after(None, taken, 9);
        assert_eq!(feb.period_start, day("2028-02-01"));
        // Read on the 1st of March, February's use is not this period's.
        let march = shown(
            PeriodPolicy::Month,
            at("2028-03-01T00:00:05Z"),
            9,
            Some(feb),
        );
        assert_eq!(march.used, 0);
        assert_eq!(march.period.unwrap().first_day, day("2028-03-01"));
    }

    #[test]
    fn shown_is_the_current_period_or_all_time() {
        let dec = Tally {
            period_start: day("2026-12-01"),
            used: 40,
        };
        let now = at("2026-12-06T12:00:00Z");
        let s = shown(PeriodPolicy::Month, now, 5000, Some(dec));
        assert_eq!(s.used, 40);
        assert_eq!(s.period, Some(Period::month_of(day("2026-12-06"))));
        assert_eq!(
            shown(PeriodPolicy::Month, now, 5000, None).used,
            0,
            "never reported"
        );
        let none = shown(PeriodPolicy::None, now, 5000, Some(dec));
        assert_eq!(
            none,
            Shown {
                used: 5000,
                period: None
            }
        );
    }

    #[test]
    fn a_vpn_account_shows_what_the_vpn_manager_counts() {
        let now = at("2026-12-06T12:00:00Z");
        let meter = Meter {
            policy: PeriodPolicy::Month,
            now,
        };
        let mut r = Resource::fixture(
            ResourceKind::VpnUser,
            crate::Status::Active,
            crate::Desired::Active,
            now,
        );
        r.traffic_used = 77;
        assert_eq!(
            meter.shown(&r),
            Shown {
                used: 77,
                period: None
            }
        );
        r.kind = ResourceKind::HostingNode;
        r.tally = Some(Tally {
            period_start: day("2026-11-01"),
            used: 9,
        });
        assert_eq!(meter.shown(&r).used, 0, "November's use is not December's");
    }

    #[test]
    fn a_window_is_every_day_up_to_today_oldest_first() {
        let now = at("2027-01-02T08:00:00Z");
        let w = Window::ending(now, Some(5)).unwrap();
        assert_eq!(
            (w.first_day, w.last_day),
            (day("2026-12-29"), day("2027-01-02"))
        );
        let rows = [
            DayUsage {
                date: day("2027-01-01"),
                rx_bytes: 3,
                tx_bytes: 4,
            },
            DayUsage {
                date: day("2026-12-20"),
                rx_bytes: 9,
                tx_bytes: 9,
            },
        ];
        let days = w.fill(&rows);
        assert_eq!(days.len(), 5);
        assert_eq!(days[0].date, day("2026-12-29"));
        assert_eq!(days[3], rows[0]);
        assert_eq!(days.iter().map(|d| d.rx_bytes + d.tx_bytes).sum::<i64>(), 7);
        assert_eq!(
            Window::ending(now, None).unwrap().first_day,
            day("2026-12-04")
        );
        let leap = Window::ending(at("2028-03-01T00:00:00Z"), Some(2)).unwrap();
        assert_eq!(leap.first_day, day("2028-02-29"));
    }

    #[test]
    fn a_window_outside_one_to_ninety_days_is_refused() {
        let now = at("2026-12-06T00:00:00Z");
        for bad in [0, -1, 91, i64::MAX, i64::MIN] {
            assert_eq!(
                Window::ending(now, Some(bad)).unwrap_err().code,
                "invalid_days"
            );
        }
        assert!(Window::ending(now, Some(90)).is_ok());
        assert!(Window::ending(now, Some(1)).is_ok());
    }

    #[test]
    fn retention_counts_back_whole_days() {
        assert_eq!(
            kept_from(at("2026-12-06T23:00:00Z"), 400),
            day("2025-11-01")
        );
        assert_eq!(kept_from(at("2026-12-06T23:00:00Z"), 0), day("2026-12-06"));
    }
}
