//! Business hours: when agents are there at all, per channel and skill, in a time zone, with holidays
//! (`BUSINESS_HOURS`). Outside them presence is `offline` without asking MSC. Time zones come from the
//! database bundled into the binary (jiff), not from the Lambda image's files, and daylight-saving
//! changes are the time zone's.
//!
//! The format, one rule per line or separated by `|`:
//!
//! ```text
//! * = Europe/Amsterdam: mon-fri 09:00-17:30, sat 10:00-14:00; closed 2026-12-25 2026-12-26
//! WhatsApp = Europe/Amsterdam: daily 08:00-22:00
//! WebChat/billing = Europe/Amsterdam: mon-fri 09:00-12:00
//! */sales = Europe/London: mon-fri 08:00-18:00
//! ```
//!
//! A rule is `<channel>[/<skill>] = <IANA time zone>: <openings>[; closed <dates>]`; `*` is any channel.
//! Openings are `<days> <HH:MM>-<HH:MM>`, comma-separated, where days are `mon`..`sun`, a range such
//! as `mon-fri`, or `daily`; `24:00` closes at midnight. Dates are `YYYY-MM-DD`, separated by spaces or
//! commas. The most specific rule applies: channel and skill, then any channel with the skill, then the
//! channel, then `*`. No rule for a channel (or no `BUSINESS_HOURS` at all) means always open.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// What the hours say at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    Open,
    /// Closed; when it opens next (epoch seconds), if within a year.
    Closed {
        opens_at: Option<i64>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct BusinessHours {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    channel: Option<String>,
    skill: Option<String>,
    zone: TimeZone,
    openings: Vec<Opening>,
    closed: Vec<Date>,
}

#[derive(Debug, Clone, Copy)]
struct Opening {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after midnight, local time; `to` is exclusive.
    from: u16,
    to: u16,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl BusinessHours {
    /// Always open: no rules.
    pub fn always_open() -> Self {
        Self::default()
    }

    /// Reads the format above; the error names the rule and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rules = text
            .split(['|', '\n'])
            .map(str::trim)
            .filter(|rule| !rule.is_empty())
            .enumerate()
            .map(|(index, rule)| {
                parse_rule(rule)
                    .map_err(|problem| format!("rule {} ({rule:?}): {problem}", index + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }

    /// Whether agents can be there for `channel` (and `skill`) at `now` (epoch seconds).
    pub fn at(&self, channel: &str, skill: Option<&str>, now: i64) -> Hours {
        let Some(rule) = self.rule_for(channel, skill) else {
            return Hours::Open;
        };
        let Ok(now) = Timestamp::from_second(now) else {
            return Hours::Open;
        };
        if rule.is_open(now) {
            Hours::Open
        } else {
            Hours::Closed {
                opens_at: rule.opens_after(now),
            }
        }
    }

    fn rule_for(&self, channel: &str, skill: Option<&str>) -> Option<&Rule> {
        let matches = |rule_channel: Option<&str>, rule_skill: Option<&str>| {
            self.rules.iter().find(|rule| {
                rule.channel.as_deref() == rule_channel && rule.skill.as_deref() == rule_skill
            })
        };
        skill
            .and_then(|skill| matches(Some(channel), Some(skill)).or(matches(None, Some(skill))))
            .or_else(|| matches(Some(channel), None))
            .or_else(|| matches(None, None))
    }
}

impl Rule {
    fn is_open(&self, now: Timestamp) -> bool {
        let local = self.zone.to_datetime(now);
        if self.closed.contains(&local.date()) {
            return false;
        }
        let day = usize::from(
            local
                .date()
                .weekday()
                .to_monday_zero_offset()
                .unsigned_abs(),
        );
        let minute = minutes(local.time());
        self.openings
            .iter()
            .any(|o| o.days[day] && o.from <= minute && minute < o.to)
    }

    /// The first opening after `now`, looking a year ahead.
    fn opens_after(&self, now: Timestamp) -> Option<i64> {
        let mut date = self.zone.to_datetime(now).date();
        for _ in 0..=366 {
            if !self.closed.contains(&date) {
                let day = usize::from(date.weekday().to_monday_zero_offset().unsigned_abs());
                let next = self
                    .openings
                    .iter()
                    .filter(|o| o.days[day])
                    .filter_map(|o| {
                        let start = date.at((o.from / 60) as i8, (o.from % 60) as i8, 0, 0);
                        self.zone.to_timestamp(start).ok()
                    })
                    .filter(|start| *start > now)
                    .min();
                if let Some(start) = next {
                    return Some(start.as_second());
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

fn minutes(time: Time) -> u16 {
    (time.hour() as u16) * 60 + time.minute() as u16
}

fn parse_rule(rule: &str) -> Result<Rule, String> {
    let (scope, schedule) = rule
        .split_once('=')
        .ok_or("expected <channel>[/<skill>] = <time zone>: <openings>")?;
    let (channel, skill) = match scope.trim().split_once('/') {
        Some((channel, skill)) => (channel.trim(), Some(skill.trim())),
        None => (scope.trim(), None),
    };
    if channel.is_empty() || skill.is_some_and(str::is_empty) {
        return Err("the channel (or *) and the skill after / must not be empty".into());
    }
    let (zone_name, rest) = schedule
        .split_once(':')
        .ok_or("expected a time zone followed by a colon, e.g. Europe/Amsterdam:")?;
    let zone_name = zone_name.trim();
    let zone = TimeZone::get(zone_name).map_err(|_| {
        format!("unknown time zone {zone_name:?} (an IANA name such as Europe/Amsterdam)")
    })?;
    let mut parts = rest.split(';');
    let openings = parts
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(parse_opening)
        .collect::<Result<Vec<_>, _>>()?;
    let mut closed = Vec::new();
    for part in parts {
        let dates = part
            .trim()
            .strip_prefix("closed")
            .ok_or_else(|| format!("expected \"closed <dates>\" after ;, got {:?}", part.trim()))?;
        for date in dates.split([' ', ',']).filter(|d| !d.is_empty()) {
            closed.push(
                date.parse::<Date>()
                    .map_err(|_| format!("{date:?} is not a date as YYYY-MM-DD"))?,
            );
        }
    }
    Ok(Rule {
        channel: (channel != "*").then(|| channel.to_owned()),
        skill: skill.map(str::to_owned),
        zone,
        openings,
        closed,
    })
}

fn parse_opening(opening: &str) -> Result<Opening, String> {
    let (days, times) = opening
        .split_once(' ')
        .ok_or_else(|| format!("{opening:?} is not <days> <HH:MM>-<HH:MM>"))?;
    let (from, to) = times
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{times:?} is not <HH:MM>-<HH:MM>"))?;
    let (from, to) = (clock(from)?, clock(to)?);
    if to <= from {
        return Err(format!(
            "{opening:?} closes before it opens (hours past midnight go into the next day's opening)"
        ));
    }
    Ok(Opening {
        days: parse_days(days)?,
        from,
        to,
    })
}

fn parse_days(days: &str) -> Result<[bool; 7], String> {
    let day = |name: &str| {
        DAYS.iter()
            .position(|d| d.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                format!("{name:?} is not a day (mon, tue, wed, thu, fri, sat, sun or daily)")
            })
    };
    let mut open = [false; 7];
    if days.eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    match days.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (day(first)?, day(last)?);
            if last < first {
                return Err(format!(
                    "{days:?} runs backwards (write sat-sun, not sun-sat)"
                ));
            }
            open[first..=last].fill(true);
        }
        None => open[day(days)?] = true,
    }
    Ok(open)
}

/// `HH:MM` as minutes after midnight; `24:00` is the end of the day.
fn clock(time: &str) -> Result<u16, String> {
    let time = time.trim();
    let parsed = time.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
        ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
    });
    parsed.ok_or_else(|| format!("{time:?} is not a time as HH:MM"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Epoch seconds of a UTC date and time.
    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn hours() -> BusinessHours {
        BusinessHours::parse(
            "* = Europe/Amsterdam: mon-sun 09:00-17:30; closed 2027-12-25 \
             | WebChat/billing = Europe/Amsterdam: mon-fri 09:00-12:00",
        )
        .unwrap()
    }

    #[test]
    fn opening_follows_the_clock_of_the_zone_across_both_daylight_saving_changes() {
        let hours = hours();
        // Saturday 27 March 2027, CET (UTC+1): 09:00 local is 08:00 UTC.
        assert!(matches!(
            hours.at("WebChat", None, utc("2027-03-27T07:30:00Z")),
            Hours::Closed { .. }
        ));
        assert_eq!(
            hours.at("WebChat", None, utc("2027-03-27T08:30:00Z")),
            Hours::Open
        );
        // Sunday 28 March 2027, clocks went forward at 02:00: CEST (UTC+2), 09:00 local is 07:00 UTC.
        assert_eq!(
            hours.at("WebChat", None, utc("2027-03-28T07:30:00Z")),
            Hours::Open
        );
        assert_eq!(
            hours.at("WebChat", None, utc("2027-03-28T06:30:00Z")),
            Hours::Closed {
                opens_at: Some(utc("2027-03-28T07:00:00Z"))
            }
        );
        assert_eq!(
            hours.at("WebChat", None, utc("2027-03-28T15:29:00Z")),
            Hours::Open
        );
        assert!(matches!(
            hours.at("WebChat", None, utc("2027-03-28T15:30:00Z")),
            Hours::Closed { .. }
        ));
        // Sunday 31 October 2027, clocks went back at 03:00: CET again, 09:00 local is 08:00 UTC.
        assert_eq!(
            hours.at("WebChat", None, utc("2027-10-31T07:30:00Z")),
            Hours::Closed {
                opens_at: Some(utc("2027-10-31T08:00:00Z"))
            }
        );
        assert_eq!(
            hours.at("WebChat", None, utc("2027-10-31T08:00:00Z")),
            Hours::Open
        );
        assert_eq!(
            hours.at("WebChat", None, utc("2027-10-30T07:30:00Z")),
            Hours::Open,
            "CEST the day before"
        );
    }

    #[test]
    fn a_holiday_is_closed_all_day_and_opens_the_next_morning() {
        assert_eq!(
            hours().at("WebChat", None, utc("2027-12-25T12:00:00Z")),
            Hours::Closed {
                opens_at: Some(utc("2027-12-26T08:00:00Z"))
            }
        );
    }

    #[test]
    fn the_most_specific_rule_applies() {
        let hours = hours();
        let friday_afternoon = utc("2027-06-04T12:00:00Z"); // 14:00 CEST
        assert_eq!(hours.at("WebChat", None, friday_afternoon), Hours::Open);
        assert_eq!(
            hours.at("WebChat", Some("sales"), friday_afternoon),
            Hours::Open
        );
        assert_eq!(
            hours.at("WebChat", Some("billing"), friday_afternoon),
            Hours::Closed {
                opens_at: Some(utc("2027-06-07T07:00:00Z")) // Monday 09:00 CEST
            }
        );
        assert_eq!(
            hours.at("WhatsApp", Some("billing"), friday_afternoon),
            Hours::Open
        );
        assert_eq!(
            BusinessHours::always_open().at("WebChat", None, friday_afternoon),
            Hours::Open
        );
        let channel_only = BusinessHours::parse("WhatsApp = UTC: mon 00:00-24:00").unwrap();
        assert_eq!(
            channel_only.at("WebChat", None, friday_afternoon),
            Hours::Open,
            "no rule"
        );
        assert!(matches!(
            channel_only.at("WhatsApp", None, friday_afternoon),
            Hours::Closed { .. }
        ));
    }

    #[test]
    fn malformed_hours_name_the_rule_and_the_problem() {
        for (text, problem) in [
            ("* Europe/Amsterdam: mon 09:00-17:00", "expected <channel>"),
            (
                "* = Europe/Amsterdm: mon 09:00-17:00",
                "unknown time zone \"Europe/Amsterdm\"",
            ),
            ("* = UTC: monday 09:00-17:00", "\"monday\" is not a day"),
            ("* = UTC: mon 9-17", "not a time"),
            ("* = UTC: mon 17:00-09:00", "closes before it opens"),
            ("* = UTC: sun-mon 09:00-17:00", "runs backwards"),
            (
                "* = UTC: mon 09:00-17:00; shut 2027-01-01",
                "expected \"closed <dates>\"",
            ),
            ("* = UTC: mon 09:00-17:00; closed 2027-13-01", "not a date"),
            ("* = UTC: mon 09:00-25:00", "not a time"),
        ] {
            let err = BusinessHours::parse(&format!("WhatsApp = UTC: daily 08:00-20:00 | {text}"))
                .unwrap_err();
            assert!(err.starts_with("rule 2"), "{err}");
            assert!(err.contains(problem), "{err} should say {problem}");
        }
    }
}
