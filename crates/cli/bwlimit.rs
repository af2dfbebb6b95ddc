//! `--bwlimit`: one rate, or a timetable of rates by the local time of day, or of the week, in rclone's form:
//! `"08:00,512KiB/s 12:00,10MiB/s 18:00,off"` (every day), `"Mon-08:00,1MiB/s Sat-00:00,off"` (a week). Each
//! entry holds from its time until the next one's; before the first, the last one of the cycle holds.

use crate::addr::parse_rate;
use chrono::{Datelike, Timelike};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::run::Bandwidth;

const DAY: u32 = 24 * 60;
const WEEK: u32 = 7 * DAY;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A parsed `--bwlimit`: rates (`None`: off) from minutes into the cycle on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timetable {
    /// Sorted by minute, at least one.
    entries: Vec<(u32, Option<u64>)>,
    /// The cycle in minutes: a day, or a week when the entries name days.
    cycle: u32,
}

/// The clap value parser: checks the text, keeps it as written (the job records it so).
pub(crate) fn check(s: &str) -> Result<String, String> {
    Timetable::parse(s).map(|_| s.trim().to_owned())
}

impl Timetable {
    pub(crate) fn parse(s: &str) -> Result<Timetable, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        if words.is_empty() {
            return Err("--bwlimit needs a rate (50MiB/s, off) or a timetable (\"08:00,1MiB/s 18:00,off\")".into());
        }
        if words.len() == 1 && !words[0].contains([',', ':']) {
            let rate = parse_rate(words[0])?;
            return Ok(Timetable { entries: vec![(0, Some(rate).filter(|&r| r > 0))], cycle: DAY });
        }
        let bad = |w: &str, why: &str| {
            format!("--bwlimit entry {w:?}: {why}; write HH:MM,RATE or Day-HH:MM,RATE (Mon..Sun), e.g. \"Mon-08:00,1MiB/s\"")
        };
        let mut entries = Vec::new();
        let mut named_days = 0;
        for w in &words {
            let (when, rate) = w.split_once(',').ok_or_else(|| bad(w, "no rate"))?;
            let (day, clock) = match when.split_once('-') {
                Some((d, c)) => {
                    let day =
                        DAYS.iter().position(|n| n.eq_ignore_ascii_case(d)).ok_or_else(|| bad(w, "no such day"))?;
                    named_days += 1;
                    (day as u32, c)
                }
                None => (0, when),
            };
            let (h, m) = clock.split_once(':').ok_or_else(|| bad(w, "no HH:MM"))?;
            let (h, m) = match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 && m.to_string().len() <= 2 => (h, m),
                _ => return Err(bad(w, "not a time of day")),
            };
            let rate = parse_rate(rate).map_err(|e| bad(w, &e))?;
            entries.push((day * DAY + h * 60 + m, Some(rate).filter(|&r| r > 0)));
        }
        if named_days != 0 && named_days != entries.len() {
            return Err("--bwlimit: name a day in every entry of a weekly timetable, or in none".into());
        }
        entries.sort_by_key(|e| e.0);
        if entries.windows(2).any(|p| p[0].0 == p[1].0) {
            return Err("--bwlimit: two entries at the same time".into());
        }
        Ok(Timetable { entries, cycle: if named_days > 0 { WEEK } else { DAY } })
    }

    /// The rate at `minute` into the cycle.
    fn rate_at(&self, minute: u32) -> Option<u64> {
        let last = self.entries.last().expect("a timetable has an entry").1;
        self.entries.iter().take_while(|e| e.0 <= minute).last().map_or(last, |e| e.1)
    }

    /// Minutes from `minute` to the next entry's time (a whole cycle for a timetable of one entry).
    fn until_next(&self, minute: u32) -> u32 {
        let next = self.entries.iter().map(|e| e.0).find(|&t| t > minute).unwrap_or(self.entries[0].0 + self.cycle);
        next - minute
    }

    /// Where the local clock is in the cycle: (minute, seconds into it).
    fn now(&self) -> (u32, u32) {
        let now = chrono::Local::now();
        let day = if self.cycle == WEEK { now.weekday().num_days_from_monday() } else { 0 };
        (day * DAY + now.hour() * 60 + now.minute(), now.second())
    }

    /// The rate the local clock says now.
    pub(crate) fn rate_now(&self) -> Option<u64> {
        self.rate_at(self.now().0)
    }

    /// A limit at the rate of now, and, for a timetable of more than one entry, a task that moves it to each
    /// entry's rate when its time comes (ended by dropping the handle).
    pub(crate) fn start(self: &Arc<Self>) -> (Arc<Bandwidth>, Option<tokio::task::JoinHandle<()>>) {
        let limit = Arc::new(Bandwidth::new(self.rate_now()));
        if self.entries.len() < 2 {
            return (limit, None);
        }
        let (table, l) = (self.clone(), limit.clone());
        let task = tokio::spawn(async move {
            loop {
                let (minute, second) = table.now();
                let wait = u64::from(table.until_next(minute)) * 60 - u64::from(second);
                tokio::time::sleep(Duration::from_secs(wait.max(1))).await;
                let rate = table.rate_now();
                l.set(rate);
                match rate {
                    Some(r) => tracing::info!("bandwidth limit now {} bytes/s (--bwlimit timetable)", r),
                    None => tracing::info!("bandwidth limit now off (--bwlimit timetable)"),
                }
            }
        });
        (limit, Some(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn one_rate_or_a_daily_or_weekly_timetable() {
        let one = Timetable::parse("2MiB/s").unwrap();
        assert_eq!((one.rate_at(0), one.rate_at(DAY - 1)), (Some(2 * MIB), Some(2 * MIB)));
        assert_eq!(Timetable::parse("off").unwrap().rate_at(600), None);

        let day = Timetable::parse("08:00,1MiB/s 18:00,off 12:30,10MiB").unwrap();
        assert_eq!(day.cycle, DAY);
        assert_eq!(day.rate_at(7 * 60 + 59), None, "before the first entry, the day's last holds");
        assert_eq!(day.rate_at(8 * 60), Some(MIB));
        assert_eq!(day.rate_at(12 * 60 + 30), Some(10 * MIB));
        assert_eq!(day.rate_at(23 * 60), None);
        assert_eq!(day.until_next(7 * 60), 60);
        assert_eq!(day.until_next(20 * 60), 12 * 60, "to 08:00 the next day");

        let week = Timetable::parse("Mon-08:00,1MiB/s sat-00:00,off").unwrap();
        assert_eq!(week.cycle, WEEK);
        assert_eq!(week.rate_at(2 * DAY), Some(MIB), "Wednesday");
        assert_eq!(week.rate_at(6 * DAY + 60), None, "Sunday");
        assert_eq!(week.rate_at(60), None, "early Monday: Saturday's entry still holds");
        assert_eq!(week.until_next(6 * DAY), DAY + 8 * 60);
    }

    #[test]
    fn mistakes_name_the_entry_and_the_form() {
        for (bad, says) in [
            ("08:00", "no rate"),
            ("25:00,1MiB/s", "not a time of day"),
            ("Fun-08:00,1MiB", "no such day"),
            ("08:00,fast", "not a rate"),
            ("Mon-08:00,1MiB 18:00,off", "every entry"),
            ("08:00,1MiB 08:00,off", "same time"),
            ("", "needs a rate"),
        ] {
            let e = Timetable::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
