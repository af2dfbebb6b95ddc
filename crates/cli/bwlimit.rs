//! `--bwlimit`: one rate, or a timetable of rates by the local time of day, or of the week, in rclone's form:
//! `"08:00,512KiB/s 12:00,10MiB/s 18:00,off"` (every day), `"Mon-08:00,1MiB/s Sat-00:00,off"` (a week). Each
//! entry holds from its time until the next one's; before the first, the last one of the cycle holds. A rate
//! limits what the process sends and, separately, what it receives; `UP:DOWN` (`10MiB/s:off`) gives each its own.

use crate::addr::parse_rate;
use chrono::{Datelike, Timelike};
use std::sync::Arc;
use std::time::Duration;
use transfer_engine::run::Bandwidth;

const DAY: u32 = 24 * 60;
const WEEK: u32 = 7 * DAY;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The rates of one entry, bytes per second (`None`: off): what the process sends, and what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    pub up: Option<u64>,
    pub down: Option<u64>,
}

impl Rates {
    /// `RATE` (both ways) or `UP:DOWN`.
    fn parse(s: &str) -> Result<Rates, String> {
        let one = |r: &str| parse_rate(r).map(|r| Some(r).filter(|&r| r > 0));
        match s.split_once(':') {
            Some((up, down)) => Ok(Rates { up: one(up)?, down: one(down)? }),
            None => one(s).map(|r| Rates { up: r, down: r }),
        }
    }
}

/// The limits a process takes its bytes from: one for what it sends, one for what it receives.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub up: Arc<Bandwidth>,
    pub down: Arc<Bandwidth>,
}

impl Limits {
    pub(crate) fn set(&self, r: Rates) {
        self.up.set(r.up);
        self.down.set(r.down);
    }

    /// Whether either limit holds now.
    pub(crate) fn on(&self) -> bool {
        self.up.rate().is_some() || self.down.rate().is_some()
    }
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show =
            |r: Option<u64>| r.map_or_else(|| "off".to_owned(), |r| format!("{}/s", crate::output::human_bytes(r)));
        match self.up == self.down {
            true => write!(f, "{}", show(self.up)),
            false => write!(f, "{} up, {} down", show(self.up), show(self.down)),
        }
    }
}

/// A parsed `--bwlimit`: rates from minutes into the cycle on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timetable {
    /// Sorted by minute, at least one.
    entries: Vec<(u32, Rates)>,
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
            return Err(
                "--bwlimit needs a rate (50MiB/s, off, UP:DOWN) or a timetable (\"08:00,1MiB/s 18:00,off\")".into()
            );
        }
        let bad = |w: &str, why: &str| {
            format!("--bwlimit entry {w:?}: {why}; write HH:MM,RATE or Day-HH:MM,RATE (Mon..Sun), e.g. \"Mon-08:00,1MiB/s\"")
        };
        // One rate, or UP:DOWN; `08:00` alone is a time without its rate, not 8 bytes/s up.
        if let [w] = words[..] {
            if !w.contains(',') {
                let time = w.rsplit_once(':').is_some_and(|(h, m)| {
                    let h = h.rsplit_once('-').map_or(h, |(_, h)| h);
                    [h, m].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                });
                if time {
                    return Err(bad(w, "no rate"));
                }
                return Ok(Timetable { entries: vec![(0, Rates::parse(w)?)], cycle: DAY });
            }
        }
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
            let rates = Rates::parse(rate).map_err(|e| bad(w, &e))?;
            entries.push((day * DAY + h * 60 + m, rates));
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

    /// The rates at `minute` into the cycle.
    fn rate_at(&self, minute: u32) -> Rates {
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

    /// The rates the local clock says now.
    pub(crate) fn rate_now(&self) -> Rates {
        self.rate_at(self.now().0)
    }

    /// Limits at the rates of now, and, for a timetable of more than one entry, a task that moves them to each
    /// entry's rates when its time comes (ended by dropping the handle).
    pub(crate) fn start(self: &Arc<Self>) -> (Limits, Option<tokio::task::JoinHandle<()>>) {
        let now = self.rate_now();
        let limit = Limits { up: Arc::new(Bandwidth::new(now.up)), down: Arc::new(Bandwidth::new(now.down)) };
        if self.entries.len() < 2 {
            return (limit, None);
        }
        let (table, l) = (self.clone(), limit.clone());
        let task = tokio::spawn(async move {
            loop {
                let (minute, second) = table.now();
                let wait = u64::from(table.until_next(minute)) * 60 - u64::from(second);
                tokio::time::sleep(Duration::from_secs(wait.max(1))).await;
                let rates = table.rate_now();
                l.set(rates);
                tracing::info!("bandwidth limit now {rates} (--bwlimit timetable)");
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
        let both = |r: Option<u64>| Rates { up: r, down: r };
        let one = Timetable::parse("2MiB/s").unwrap();
        assert_eq!((one.rate_at(0), one.rate_at(DAY - 1)), (both(Some(2 * MIB)), both(Some(2 * MIB))));
        assert_eq!(Timetable::parse("off").unwrap().rate_at(600), both(None));
        let split = Timetable::parse("1MiB/s:off").unwrap();
        assert_eq!(split.rate_at(0), Rates { up: Some(MIB), down: None });
        let day = Timetable::parse("08:00,512KiB:4MiB 18:00,off").unwrap();
        assert_eq!(day.rate_at(9 * 60), Rates { up: Some(MIB / 2), down: Some(4 * MIB) });

        let day = Timetable::parse("08:00,1MiB/s 18:00,off 12:30,10MiB").unwrap();
        assert_eq!(day.cycle, DAY);
        assert_eq!(day.rate_at(7 * 60 + 59), both(None), "before the first entry, the day's last holds");
        assert_eq!(day.rate_at(8 * 60), both(Some(MIB)));
        assert_eq!(day.rate_at(12 * 60 + 30), both(Some(10 * MIB)));
        assert_eq!(day.rate_at(23 * 60), both(None));
        assert_eq!(day.until_next(7 * 60), 60);
        assert_eq!(day.until_next(20 * 60), 12 * 60, "to 08:00 the next day");

        let week = Timetable::parse("Mon-08:00,1MiB/s sat-00:00,off").unwrap();
        assert_eq!(week.cycle, WEEK);
        assert_eq!(week.rate_at(2 * DAY), both(Some(MIB)), "Wednesday");
        assert_eq!(week.rate_at(6 * DAY + 60), both(None), "Sunday");
        assert_eq!(week.rate_at(60), both(None), "early Monday: Saturday's entry still holds");
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
            ("1MiB:fast", "not a rate"),
            ("08:00,1MiB:", "not a rate"),
            ("", "needs a rate"),
        ] {
            let e = Timetable::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
