//! Timestamps: the shapes `lumu_cli/tsstream.py` reads as arrays, read here one line at a time.
//!
//! `parse` answers only when lumu's rules (lumu_cli/timestamps.py, the definition) surely give
//! that instant; for anything else it answers None, and the definition decides, with its reason.
//! Read: `YYYY-MM-DD[Tt ]HH:MM:SS[.,fraction of 1..9 digits][Z | z | ±HH:MM | ±HHMM | ±HH]`,
//! without a zone only when naive times are UTC; and 1 to 18 digits, an epoch number by unit.

/// 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in epoch milliseconds.
pub const MIN_MS: i64 = -62_135_596_800_000;
pub const MAX_MS: i64 = 253_402_300_799_999;
pub const OUT_WIDTH: usize = 25; // `YYYY-MM-DDTHH:MM:SS.mmmZ` and a newline

/// The unit of an epoch number (timestamps.Unit); Auto picks one by magnitude (AUTO_BOUNDS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Auto,
    S,
    Ms,
    Us,
    Ns,
}

impl Unit {
    pub fn from_name(name: &str) -> Option<Unit> {
        match name {
            "auto" => Some(Unit::Auto),
            "s" => Some(Unit::S),
            "ms" => Some(Unit::Ms),
            "us" => Some(Unit::Us),
            "ns" => Some(Unit::Ns),
            _ => None,
        }
    }
}

const EPOCH_MAX_DIGITS: usize = 18; // every 18-digit number fits an i64

/// The epoch milliseconds of a line the definition surely reads so; None when it must decide.
pub fn parse(line: &[u8], unit: Unit, naive_utc: bool) -> Option<i64> {
    if line.len() >= 19 && line[4] == b'-' {
        return iso(line, naive_utc);
    }
    if !line.is_empty() && line.len() <= EPOCH_MAX_DIGITS && line.iter().all(u8::is_ascii_digit) {
        if unit == Unit::Auto && line.len() == 8 {
            return None; // eight digits are a date, YYYYMMDD, under auto
        }
        return epoch(digits(line) as u64, unit);
    }
    None
}

/// An epoch number in `unit`, as a JSON integer or a line of digits, in milliseconds; None for
/// eight-digit numbers under auto (a date) and for instants past 9999.
pub fn epoch(value: u64, unit: Unit) -> Option<i64> {
    let unit = match unit {
        Unit::Auto if (10_000_000..100_000_000).contains(&value) => return None,
        Unit::Auto if value < 100_000_000_000 => Unit::S,
        Unit::Auto if value < 100_000_000_000_000 => Unit::Ms,
        Unit::Auto if value < 100_000_000_000_000_000 => Unit::Us,
        Unit::Auto => Unit::Ns, // below 1e20: every u64
        unit => unit,
    };
    let millis = match unit {
        Unit::S => value.checked_mul(1000)?,
        Unit::Ms => value,
        Unit::Us => value / 1000,
        _ => value / 1_000_000,
    };
    if millis > MAX_MS as u64 {
        return None;
    }
    Some(millis as i64)
}

fn digits(chars: &[u8]) -> i64 {
    chars.iter().fold(0, |value, &c| value * 10 + i64::from(c - b'0'))
}

fn all_digits(line: &[u8], columns: &[usize]) -> bool {
    columns.iter().all(|&k| line[k].is_ascii_digit())
}

fn iso(line: &[u8], naive_utc: bool) -> Option<i64> {
    let shaped = all_digits(line, &[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
        && line[7] == b'-'
        && matches!(line[10], b'T' | b't' | b' ')
        && line[13] == b':'
        && line[16] == b':';
    if !shaped {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0;
    if at < line.len() && matches!(line[at], b'.' | b',') {
        let count = line[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&count) {
            return None;
        }
        let kept = &line[at + 1..at + 1 + count.min(3)];
        fraction = digits(kept) * 10_i64.pow(3 - kept.len() as u32);
        at += 1 + count;
    }
    let zone = &line[at..];
    let offset_minutes = match zone {
        [] if naive_utc => 0,
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, rest @ ..] => {
            let (m1, m2) = match rest {
                [] => (b'0', b'0'),
                [b':', m1, m2] | [m1, m2] => (*m1, *m2),
                _ => return None,
            };
            let written = [*h1, *h2, m1, m2];
            if !written.iter().all(u8::is_ascii_digit) || digits(&written[..2]) > 23 || written[2] > b'5' {
                return None;
            }
            let year = &line[..4];
            if year == b"0001" || year == b"9999" {
                return None; // an offset may carry it out of years 1..9999: the definition says
            }
            let minutes = digits(&written[..2]) * 60 + digits(&written[2..]);
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let (year, month, day) = (digits(&line[0..4]), digits(&line[5..7]), digits(&line[8..10]));
    let (hour, minute, second) = (digits(&line[11..13]), digits(&line[14..16]), digits(&line[17..19]));
    if year < 1 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None; // 24:00 and leap seconds: the definition's
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    let millis = seconds * 1000 + fraction;
    if !(MIN_MS..=MAX_MS).contains(&millis) {
        return None;
    }
    Some(millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    DAYS[month as usize] + i64::from(month == 2 && leap)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * if month > 2 { month - 3 } else { month + 9 } + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// (year, month, day) of days since 1970-01-01 (Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, doy - (153 * mp + 2) / 5 + 1)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ\n` of epoch milliseconds within years 1..9999.
pub fn render(millis: i64) -> [u8; OUT_WIDTH] {
    let (days, in_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (seconds, ms) = (in_day / 1000, in_day % 1000);
    let mut out = *b"0000-00-00T00:00:00.000Z\n";
    let mut put = |at: usize, value: i64| {
        out[at] = b'0' + (value / 10) as u8;
        out[at + 1] = b'0' + (value % 10) as u8;
    };
    put(0, year / 100);
    put(2, year % 100);
    put(5, month);
    put(8, day);
    put(11, seconds / 3600);
    put(14, seconds / 60 % 60);
    put(17, seconds % 60);
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out
}
