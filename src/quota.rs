//! How much traffic a key may send: a burst and an emission interval.
//!
//! A [`Quota`] says that a key may make `burst` requests at once, and after that one request
//! every `interval`. `Quota::per_second(10)` admits ten requests at one instant, then one every
//! 100 ms.
//!
//! ```
//! use std::time::Duration;
//! use tower_ratelimit::Quota;
//!
//! let quota = Quota::per_minute(10).allow_burst(20);
//! assert_eq!(quota.burst(), 20);
//! assert_eq!(quota.interval(), Duration::from_secs(6));
//!
//! let parsed: Quota = "10/min; burst=20".parse()?;
//! assert_eq!(parsed, quota);
//! # Ok::<(), tower_ratelimit::QuotaError>(())
//! ```
//!
//! With the `serde` feature a quota reads from a config file as the same string, or as
//! `{ rate = 10, per = "min", burst = 20 }`; see its `Deserialize` implementation.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A rate limit: a burst of `burst` cells, then one cell every `interval`.
///
/// Build one with [`Quota::per_second`], [`Quota::per_minute`], [`Quota::per_hour`],
/// [`Quota::with_period`], their fallible `try_` forms, or by parsing a string such as
/// `"100/s"` or `"10/min; burst=50"`. Every constructor rejects values that could never limit
/// anything (a zero rate, a zero burst, a zero interval) with a [`QuotaError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    interval_nanos: u64,
    burst: NonZeroU32,
}

/// The unit a rate is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    /// The unit named `unit`: `s`, `sec`, `second`; `m`, `min`, `minute`; `h`, `hr`, `hour`;
    /// `d`, `day` (plurals and any case allowed).
    fn from_unit(unit: &str) -> Result<Self, QuotaError> {
        match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => Ok(Per::Second),
            "m" | "min" | "mins" | "minute" | "minutes" => Ok(Per::Minute),
            "h" | "hr" | "hrs" | "hour" | "hours" => Ok(Per::Hour),
            "d" | "day" | "days" => Ok(Per::Day),
            _ => Err(QuotaError::new(QuotaErrorKind::Unit(
                unit.trim().to_owned(),
            ))),
        }
    }

    /// The unit as the string form writes it.
    fn unit(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
            Per::Day => "d",
        }
    }

    fn period(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
            Per::Day => Duration::from_secs(86_400),
        }
    }
}

/// The longest window (burst × interval) a quota may have: 2⁶² ns, about 146 years. A TAT
/// is at most two windows past the clock, so with clocks that count from a process's start
/// or from 1970 in nanoseconds the arithmetic never leaves `u64`.
const MAX_WINDOW_NANOS: u64 = 1 << 62;

impl Quota {
    /// `n` cells per second with a burst of `n`.
    ///
    /// # Panics
    ///
    /// If `n` is zero or above 10⁹ (one cell per nanosecond, the finest rate counted). Use
    /// [`Quota::try_per_second`] for a value read at run time.
    ///
    /// ```
    /// let quota = tower_ratelimit::Quota::per_second(10);
    /// assert_eq!(quota.burst(), 10);
    /// ```
    #[must_use]
    pub fn per_second(n: u32) -> Self {
        Self::try_per_second(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `n` cells per minute with a burst of `n`.
    ///
    /// # Panics
    ///
    /// If `n` is zero. Use [`Quota::try_per_minute`] for a value read at run time.
    ///
    /// ```
    /// let quota = tower_ratelimit::Quota::per_minute(60);
    /// assert_eq!(quota.interval(), std::time::Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn per_minute(n: u32) -> Self {
        Self::try_per_minute(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `n` cells per hour with a burst of `n`.
    ///
    /// # Panics
    ///
    /// If `n` is zero. Use [`Quota::try_per_hour`] for a value read at run time.
    ///
    /// ```
    /// let quota = tower_ratelimit::Quota::per_hour(3600);
    /// assert_eq!(quota.interval(), std::time::Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn per_hour(n: u32) -> Self {
        Self::try_per_hour(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `n` cells per day with a burst of `n`.
    ///
    /// # Panics
    ///
    /// If `n` is zero. Use [`Quota::try_per_day`] for a value read at run time.
    ///
    /// ```
    /// let quota = tower_ratelimit::Quota::per_day(86_400);
    /// assert_eq!(quota.interval(), std::time::Duration::from_secs(1));
    /// assert_eq!(quota, "86400/d".parse().unwrap());
    /// ```
    #[must_use]
    pub fn per_day(n: u32) -> Self {
        Self::try_per_day(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One cell every `period`, with a burst of one.
    ///
    /// # Panics
    ///
    /// If `period` is shorter than one nanosecond or longer than 2⁶² ns (about 146 years). Use
    /// [`Quota::try_with_period`] for a value read at run time.
    ///
    /// ```
    /// use std::time::Duration;
    /// let quota = tower_ratelimit::Quota::with_period(Duration::from_millis(250));
    /// assert_eq!(quota.burst(), 1);
    /// ```
    #[must_use]
    pub fn with_period(period: Duration) -> Self {
        Self::try_with_period(period).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `n` cells per second, or an error if `n` is zero or above 10⁹.
    ///
    /// ```
    /// assert!(tower_ratelimit::Quota::try_per_second(0).is_err());
    /// assert!(tower_ratelimit::Quota::try_per_second(2_000_000_000).is_err());
    /// ```
    pub fn try_per_second(n: u32) -> Result<Self, QuotaError> {
        Self::per(n, Per::Second)
    }

    /// `n` cells per minute, or an error if `n` is zero.
    ///
    /// ```
    /// assert!(tower_ratelimit::Quota::try_per_minute(30).is_ok());
    /// ```
    pub fn try_per_minute(n: u32) -> Result<Self, QuotaError> {
        Self::per(n, Per::Minute)
    }

    /// `n` cells per hour, or an error if `n` is zero.
    ///
    /// ```
    /// assert!(tower_ratelimit::Quota::try_per_hour(5000).is_ok());
    /// ```
    pub fn try_per_hour(n: u32) -> Result<Self, QuotaError> {
        Self::per(n, Per::Hour)
    }

    /// `n` cells per day, or an error if `n` is zero.
    ///
    /// ```
    /// assert!(tower_ratelimit::Quota::try_per_day(0).is_err());
    /// ```
    pub fn try_per_day(n: u32) -> Result<Self, QuotaError> {
        Self::per(n, Per::Day)
    }

    /// One cell every `period`, or an error if `period` is zero or longer than 2⁶² ns (about
    /// 146 years).
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(tower_ratelimit::Quota::try_with_period(Duration::ZERO).is_err());
    /// ```
    pub fn try_with_period(period: Duration) -> Result<Self, QuotaError> {
        let nanos = u64::try_from(period.as_nanos())
            .ok()
            .filter(|&nanos| nanos <= MAX_WINDOW_NANOS)
            .ok_or(QuotaError::new(QuotaErrorKind::PeriodTooLong(period)))?;
        if nanos == 0 {
            return Err(QuotaError::new(QuotaErrorKind::ZeroPeriod));
        }
        Ok(Quota {
            interval_nanos: nanos,
            burst: NonZeroU32::MIN,
        })
    }

    fn per(n: u32, per: Per) -> Result<Self, QuotaError> {
        let n = NonZeroU32::new(n).ok_or(QuotaError::new(QuotaErrorKind::ZeroRate))?;
        // T = ⌊period / n⌋ in nanoseconds, as governor computes it. More than one cell per
        // nanosecond cannot be counted.
        let interval_nanos = (per.period().as_nanos() / u128::from(n.get())) as u64;
        if interval_nanos == 0 {
            return Err(QuotaError::new(QuotaErrorKind::RateTooHigh {
                rate: n.get(),
                per,
            }));
        }
        Quota {
            interval_nanos,
            burst: NonZeroU32::MIN,
        }
        .try_allow_burst(n.get())
    }

    /// The quota `s` says, in the syntax of [`FromStr`].
    fn parse(s: &str) -> Result<Self, QuotaError> {
        let invalid = || QuotaError::new(QuotaErrorKind::Syntax);
        let mut parts = s.split([';', ',']);
        let rate = parts.next().ok_or_else(invalid)?;
        let (n, unit) = rate.split_once('/').ok_or_else(invalid)?;
        // "10/s burst=5": a burst without its `;`, which the syntax error explains.
        if unit.trim().contains(char::is_whitespace) || unit.contains('=') {
            return Err(invalid());
        }
        let mut quota = Self::per(number("rate", n)?, Per::from_unit(unit)?)?;
        let mut burst_seen = false;
        for part in parts {
            let (name, value) = part.split_once('=').ok_or_else(invalid)?;
            if !name.trim().eq_ignore_ascii_case("burst") || burst_seen {
                return Err(invalid());
            }
            burst_seen = true;
            quota = quota.try_allow_burst(number("burst", value)?)?;
        }
        Ok(quota)
    }

    /// The same rate with a burst of `burst` cells.
    ///
    /// # Panics
    ///
    /// If `burst` is zero, or if the window `burst × interval` is longer than 2⁶² ns (about 146
    /// years). Use [`Quota::try_allow_burst`] for a value read at run time.
    ///
    /// ```
    /// let quota = tower_ratelimit::Quota::per_second(1).allow_burst(5);
    /// assert_eq!(quota.burst(), 5);
    /// ```
    #[must_use]
    pub fn allow_burst(self, burst: u32) -> Self {
        self.try_allow_burst(burst)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The same rate with a burst of `burst` cells, or an error if the burst is zero or its
    /// window is longer than 2⁶² ns (about 146 years).
    ///
    /// ```
    /// assert!(tower_ratelimit::Quota::per_second(1).try_allow_burst(0).is_err());
    /// ```
    pub fn try_allow_burst(self, burst: u32) -> Result<Self, QuotaError> {
        let burst = NonZeroU32::new(burst).ok_or(QuotaError::new(QuotaErrorKind::ZeroBurst))?;
        if self
            .interval_nanos
            .checked_mul(u64::from(burst.get()))
            .is_none_or(|window| window > MAX_WINDOW_NANOS)
        {
            return Err(QuotaError::new(QuotaErrorKind::WindowTooLong {
                burst: burst.get(),
                interval: self.interval(),
            }));
        }
        Ok(Quota { burst, ..self })
    }

    /// How many cells a key may use at one instant.
    #[inline]
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The emission interval `T`: the time after which one more cell is available.
    #[must_use]
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    /// The emission interval in nanoseconds.
    #[inline]
    #[must_use]
    pub fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    /// The time a key takes to go from an empty burst back to a full one: `burst × interval`.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos())
    }

    #[inline]
    pub(crate) fn window_nanos(&self) -> u64 {
        // Validated by every constructor.
        self.interval_nanos * u64::from(self.burst.get())
    }
}

/// The `what` (a rate or a burst) that `s` writes, or an error quoting `s`.
fn number(what: &'static str, s: &str) -> Result<u32, QuotaError> {
    s.trim().parse().map_err(|_| {
        QuotaError::new(QuotaErrorKind::Number {
            what,
            value: s.trim().to_owned(),
        })
    })
}

impl fmt::Display for Quota {
    /// Writes the quota in the syntax [`FromStr`] reads when it can, else as an interval.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for per in [Per::Second, Per::Minute, Per::Hour, Per::Day] {
            let period = per.period().as_nanos() as u64;
            let n = period / self.interval_nanos;
            if n >= 1 && n <= u64::from(u32::MAX) && period / n == self.interval_nanos {
                write!(f, "{n}/{}", per.unit())?;
                if n != u64::from(self.burst.get()) {
                    write!(f, "; burst={}", self.burst)?;
                }
                return Ok(());
            }
        }
        write!(f, "1 per {:?}; burst={}", self.interval(), self.burst)
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    /// Parses `"<n>/<unit>"` with an optional `"; burst=<b>"` (a `,` works as separator too;
    /// the unit and `burst` in any case).
    ///
    /// Units: `s`, `sec`, `second`; `m`, `min`, `minute`; `h`, `hr`, `hour`; `d`, `day` (plurals
    /// allowed).
    /// Every error quotes `s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).map_err(|error| QuotaError {
            input: Some(s.to_owned()),
            ..error
        })
    }
}

/// A quota that could never limit anything, or a string that is not a quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaError {
    kind: QuotaErrorKind,
    /// The string the quota was parsed from, if it was.
    input: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum QuotaErrorKind {
    ZeroRate,
    RateTooHigh { rate: u32, per: Per },
    ZeroBurst,
    ZeroPeriod,
    PeriodTooLong(Duration),
    WindowTooLong { burst: u32, interval: Duration },
    Unit(String),
    Number { what: &'static str, value: String },
    Syntax,
}

impl QuotaError {
    fn new(kind: QuotaErrorKind) -> Self {
        QuotaError { kind, input: None }
    }
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid quota")?;
        if let Some(input) = &self.input {
            write!(f, " {input:?}")?;
        }
        match &self.kind {
            QuotaErrorKind::ZeroRate => f.write_str(": the rate is 0; use at least 1"),
            QuotaErrorKind::RateTooHigh { rate, per } => write!(
                f,
                ": the rate {rate}/{} is above one per nanosecond (10⁹ per second); use a lower \
                 rate",
                per.unit()
            ),
            QuotaErrorKind::ZeroBurst => f.write_str(": the burst is 0; use at least 1"),
            QuotaErrorKind::ZeroPeriod => f.write_str(": the period is 0; use at least 1ns"),
            QuotaErrorKind::PeriodTooLong(period) => write!(
                f,
                ": the period {period:?} is longer than 2^62 ns (about 146 years), the \
                 longest window"
            ),
            QuotaErrorKind::WindowTooLong { burst, interval } => write!(
                f,
                ": burst {burst} × interval {interval:?} is longer than 2^62 ns (about 146 \
                 years), the longest window"
            ),
            QuotaErrorKind::Unit(unit) => {
                write!(f, ": unknown unit {unit:?}; use s, min, h or d")
            }
            QuotaErrorKind::Number { what, value } => write!(
                f,
                ": the {what} {value:?} is not a whole number from 1 to {}",
                u32::MAX
            ),
            QuotaErrorKind::Syntax => f.write_str(
                ": expected \"<n>/<s|min|h|d>\" with an optional \"; burst=<b>\", \
                 such as \"100/s\" or \"10/min; burst=50\"",
            ),
        }
    }
}

impl std::error::Error for QuotaError {}

/// `Deserialize` and `Serialize` for [`Quota`], with the `serde` feature.
#[cfg(feature = "serde")]
mod serde_impls {
    use std::fmt;

    use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
    use serde::{ser, Deserialize, Deserializer, Serialize, Serializer};

    use super::{Per, Quota};

    /// Reads a quota from a config file in either of two forms:
    ///
    /// - a string in the syntax of [`FromStr`](std::str::FromStr): `"100/min; burst=20"`;
    /// - a struct `{ rate = 100, per = "min", burst = 20 }`: `rate` cells per unit `per` (the
    ///   units of the string form), and a `burst` that defaults to `rate`. Any other field is
    ///   an error.
    ///
    /// A value that is not a quota is an error that names it, with the message of
    /// [`QuotaError`](super::QuotaError). The format must be self-describing (TOML, JSON, YAML
    /// and the like).
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tower_ratelimit::Quota;
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct Limits {
    ///     api: Quota,
    ///     search: Quota,
    /// }
    ///
    /// let limits: Limits = toml::from_str(r#"
    ///     api = "100/min; burst=20"
    ///     search = { rate = 100, per = "min", burst = 20 }
    /// "#)?;
    /// assert_eq!(limits.api, Quota::per_minute(100).allow_burst(20));
    /// assert_eq!(limits.search, limits.api);
    ///
    /// let error = toml::from_str::<Limits>(r#"
    ///     api = "0/min"
    ///     search = "10/s"
    /// "#).unwrap_err();
    /// assert!(error.to_string().contains(r#"invalid quota "0/min": the rate is 0"#), "{error}");
    /// # Ok::<(), toml::de::Error>(())
    /// ```
    impl<'de> Deserialize<'de> for Quota {
        fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
        where
            D: Deserializer<'de>,
        {
            deserializer.deserialize_any(QuotaVisitor)
        }
    }

    /// Reads either form of a quota.
    struct QuotaVisitor;

    /// The struct form of a quota.
    #[derive(Deserialize)]
    #[serde(rename = "Quota", deny_unknown_fields)]
    struct QuotaFields {
        rate: u32,
        per: String,
        burst: Option<u32>,
    }

    impl<'de> Visitor<'de> for QuotaVisitor {
        type Value = Quota;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a quota: a string such as \"100/min; burst=20\" \
                 or a struct such as { rate = 100, per = \"min\", burst = 20 }",
            )
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Quota, E> {
            s.parse().map_err(E::custom)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Quota, A::Error> {
            let map = MapAccessDeserializer::new(map);
            let QuotaFields { rate, per, burst } = QuotaFields::deserialize(map)?;
            let quota = Per::from_unit(&per).and_then(|per| Quota::per(rate, per));
            match burst {
                Some(burst) => quota.and_then(|quota| quota.try_allow_burst(burst)),
                None => quota,
            }
            .map_err(de::Error::custom)
        }
    }

    /// Writes the quota as its [`Display`](fmt::Display) string, such as `"10/min; burst=20"`,
    /// which reads back as the same quota.
    ///
    /// A quota built with [`Quota::with_period`] whose period is not a whole fraction of a
    /// second, minute, hour or day has no such string: writing it is an error.
    ///
    /// ```
    /// use tower_ratelimit::Quota;
    ///
    /// let quota = Quota::per_minute(10).allow_burst(20);
    /// assert_eq!(serde_json::to_string(&quota)?, r#""10/min; burst=20""#);
    /// assert_eq!(serde_json::from_str::<Quota>(r#""10/min; burst=20""#)?, quota);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    impl Serialize for Quota {
        fn serialize<S>(&self, serializer: S) -> Result<S::Ok, S::Error>
        where
            S: Serializer,
        {
            let text = self.to_string();
            if text.parse() != Ok(*self) {
                return Err(ser::Error::custom(format!(
                    "quota {text:?} cannot be written as \"<n>/<s|min|h|d>\": build it from a \
                     rate per second, minute, hour or day to serialize it"
                )));
            }
            serializer.serialize_str(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_above_one_per_nanosecond_are_refused_not_zero_intervals() {
        assert_eq!(
            Quota::try_per_second(1_000_000_000)
                .unwrap()
                .interval_nanos(),
            1
        );
        let err = Quota::try_per_second(1_000_000_001).unwrap_err();
        assert!(
            err.to_string().contains("above one per nanosecond"),
            "{err}"
        );
        let parsed = "2000000000/s".parse::<Quota>().unwrap_err();
        assert!(parsed.to_string().contains("\"2000000000/s\""), "{parsed}");
        assert!(Quota::try_per_minute(u32::MAX).is_ok());
    }

    #[test]
    fn windows_past_the_longest_are_refused_and_the_longest_still_limits() {
        let longest = Duration::from_nanos(MAX_WINDOW_NANOS);
        let err = Quota::try_with_period(longest + Duration::from_nanos(1)).unwrap_err();
        assert!(err.to_string().contains("the longest window"), "{err}");
        assert!(Quota::try_with_period(Duration::from_nanos(u64::MAX)).is_err());
        assert!(Quota::try_with_period(Duration::MAX).is_err());
        let half = Quota::with_period(longest / 2);
        assert!(half.try_allow_burst(2).is_ok());
        assert!(half.try_allow_burst(3).is_err());
        // The longest window admits its one cell and nothing more, at any time a clock of
        // nanoseconds since 1970 will read for centuries.
        let quota = Quota::with_period(longest);
        for now in [0, 1_800_000_000_000_000_000, 4_000_000_000_000_000_000] {
            let tat = crate::gcra::conforming_tat(&quota, 0, now, 1).unwrap();
            assert_eq!(crate::gcra::conforming_tat(&quota, tat, now, 1), None);
            assert_eq!(crate::gcra::conforming_tat(&quota, tat, now + 1, 1), None);
        }
    }

    #[test]
    fn per_unit_constructors_compute_interval_like_governor() {
        assert_eq!(Quota::per_second(3).interval_nanos(), 333_333_333);
        assert_eq!(Quota::per_minute(10).interval(), Duration::from_secs(6));
        assert_eq!(Quota::per_hour(5000).interval_nanos(), 720_000_000);
        assert_eq!(Quota::per_hour(5000).burst(), 5000);
        assert_eq!(Quota::per_day(3).interval(), Duration::from_secs(28_800));
        assert_eq!(Quota::per_day(3).burst(), 3);
    }

    #[test]
    fn parses_rates_units_and_bursts() {
        assert_eq!("100/s".parse(), Ok(Quota::per_second(100)));
        assert_eq!("10/min".parse(), Ok(Quota::per_minute(10)));
        assert_eq!(" 5000 / h ".parse(), Ok(Quota::per_hour(5000)));
        assert_eq!(
            "10/s; burst=50".parse(),
            Ok(Quota::per_second(10).allow_burst(50))
        );
        assert_eq!(
            "10/min, burst=20".parse(),
            Ok(Quota::per_minute(10).allow_burst(20))
        );
        assert_eq!(
            "10/MIN; BURST=20".parse(),
            Ok(Quota::per_minute(10).allow_burst(20))
        );
        assert_eq!(
            "10/s; Burst=3".parse(),
            Ok(Quota::per_second(10).allow_burst(3))
        );
    }

    #[test]
    fn parses_rates_per_day_and_writes_slower_quotas_as_such() {
        let daily = Quota::with_period(Duration::from_millis(86_400)).allow_burst(1000);
        assert_eq!("1000/day".parse(), Ok(daily));
        assert_eq!("1000/d".parse(), Ok(daily));
        assert_eq!(" 1000 / Days ".parse(), Ok(daily));
        assert_eq!(daily.to_string(), "1000/d");
        // Slower than one per hour: written per day, and read back as the same quota.
        let every_two_hours = Quota::with_period(Duration::from_secs(7200));
        assert_eq!(every_two_hours.to_string(), "12/d; burst=1");
        assert_eq!("12/d; burst=1".parse(), Ok(every_two_hours));
        // Faster ones keep the unit they had.
        assert_eq!(Quota::per_hour(24).to_string(), "24/h");
    }

    #[test]
    fn rejects_zero_values_and_garbage_with_the_bad_value_named() {
        let zero = "0/s".parse::<Quota>().unwrap_err();
        assert!(zero.to_string().contains("rate is 0"), "{zero}");
        let burst = "1/s; burst=0".parse::<Quota>().unwrap_err();
        assert!(burst.to_string().contains("burst is 0"), "{burst}");
        for bad in [
            "",
            "10",
            "10/fortnight",
            "x/s",
            "-1/s",
            "10/s; rate=4",
            "10/s; burst=1; burst=2",
        ] {
            let err = bad.parse::<Quota>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        // A burst without its `;` is told the syntax, not an unknown unit.
        let unsplit = "10/s burst=5".parse::<Quota>().unwrap_err().to_string();
        assert!(unsplit.contains("\"; burst=<b>\""), "{unsplit}");
        assert!(!unsplit.contains("unit"), "{unsplit}");
        assert!(Quota::try_with_period(Duration::ZERO).is_err());
        assert!(Quota::try_with_period(Duration::MAX).is_err());
        assert!(Quota::with_period(Duration::from_secs(3600))
            .try_allow_burst(u32::MAX)
            .is_err());
    }

    #[test]
    fn a_rate_or_burst_that_is_not_a_u32_is_named_not_told_the_syntax() {
        for (bad, number) in [
            ("-1/s", "the rate \"-1\""),
            ("4294967296/min", "the rate \"4294967296\""),
            ("ten/s", "the rate \"ten\""),
            ("10/s; burst=-5", "the burst \"-5\""),
            ("10/s; burst=4294967296", "the burst \"4294967296\""),
        ] {
            let err = bad.parse::<Quota>().unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid quota {bad:?}: {number} is not a whole number from 1 to 4294967295"
                ),
            );
        }
    }

    #[test]
    fn display_round_trips_through_from_str() {
        for q in [
            Quota::per_second(100),
            Quota::per_minute(10).allow_burst(20),
            Quota::per_hour(7),
        ] {
            assert_eq!(q.to_string().parse(), Ok(q), "{q}");
        }
    }

    #[test]
    fn display_states_the_burst_only_where_it_differs_from_the_rate() {
        assert_eq!(Quota::per_second(100).to_string(), "100/s");
        assert_eq!(
            Quota::per_minute(10).allow_burst(20).to_string(),
            "10/min; burst=20"
        );
        assert_eq!(Quota::per_hour(7).to_string(), "7/h");
        assert_eq!(
            Quota::with_period(Duration::from_millis(250)).to_string(),
            "4/s; burst=1"
        );
        // Five hours is no whole fraction of a day.
        assert_eq!(
            Quota::with_period(Duration::from_secs(18_000)).to_string(),
            "1 per 18000s; burst=1"
        );
    }

    #[test]
    fn errors_quote_the_string_they_parsed() {
        let err = "0/s".parse::<Quota>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid quota \"0/s\": the rate is 0; use at least 1"
        );
        let err = "10/fortnight".parse::<Quota>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid quota \"10/fortnight\": unknown unit \"fortnight\"; use s, min, h or d"
        );
        let err = Quota::try_per_second(0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid quota: the rate is 0; use at least 1"
        );
    }

    #[cfg(feature = "serde")]
    mod serde_impls {
        use super::*;

        /// A config with one quota, as `limit`.
        #[derive(Debug, serde::Deserialize)]
        struct Config {
            limit: Quota,
        }

        fn read(toml: &str) -> Result<Quota, String> {
            toml::from_str::<Config>(toml)
                .map(|config| config.limit)
                .map_err(|e| e.message().to_owned())
        }

        #[test]
        fn deserializes_from_the_strings_it_parses() {
            assert_eq!(read(r#"limit = "100/s""#), Ok(Quota::per_second(100)));
            assert_eq!(
                read(r#"limit = "100/min; burst=20""#),
                Ok(Quota::per_minute(100).allow_burst(20))
            );
            assert_eq!(
                read(r#"limit = " 5000 / hours ""#),
                Ok(Quota::per_hour(5000))
            );
        }

        #[test]
        fn deserializes_from_rate_per_and_an_optional_burst() {
            assert_eq!(
                read(r#"limit = { rate = 100, per = "min", burst = 20 }"#),
                Ok(Quota::per_minute(100).allow_burst(20))
            );
            assert_eq!(
                read("limit = { rate = 10, per = \"s\" }"),
                Ok(Quota::per_second(10))
            );
            assert_eq!(
                read("[limit]\nrate = 7\nper = \"hour\"\n"),
                Ok(Quota::per_hour(7))
            );
        }

        #[test]
        fn deserialize_errors_name_the_bad_value() {
            for (toml, message) in [
                (
                    r#"limit = "0/s""#,
                    r#"invalid quota "0/s": the rate is 0; use at least 1"#,
                ),
                (
                    r#"limit = "10/s; burst=0""#,
                    r#"invalid quota "10/s; burst=0": the burst is 0; use at least 1"#,
                ),
                (
                    r#"limit = "ten per second""#,
                    r#"invalid quota "ten per second": expected"#,
                ),
                (
                    r#"limit = { rate = 0, per = "s" }"#,
                    "invalid quota: the rate is 0; use at least 1",
                ),
                (
                    r#"limit = { rate = 10, per = "fortnight" }"#,
                    r#"invalid quota: unknown unit "fortnight"; use s, min, h or d"#,
                ),
                (
                    r#"limit = { rate = 10, per = "s", burst = 0 }"#,
                    "invalid quota: the burst is 0; use at least 1",
                ),
                (r#"limit = { rate = -1, per = "s" }"#, "-1"),
                (r#"limit = { rate = "10", per = "s" }"#, r#""10""#),
                (
                    r#"limit = { rate = 10, per = "s", brust = 5 }"#,
                    "unknown field `brust`",
                ),
                (r#"limit = { rate = 10 }"#, "missing field `per`"),
                (r#"limit = 10"#, "expected a quota"),
            ] {
                let error = read(toml).unwrap_err();
                assert!(error.contains(message), "{toml}: {error}");
            }
        }

        #[test]
        fn a_rate_too_high_for_nanoseconds_is_named_in_the_struct_form_too() {
            assert_eq!(
                read(r#"limit = { rate = 2000000000, per = "s" }"#),
                Err(
                    "invalid quota: the rate 2000000000/s is above one per nanosecond \
                     (10⁹ per second); use a lower rate"
                        .to_owned()
                )
            );
        }

        #[test]
        fn a_unit_of_the_struct_form_is_named_not_told_the_string_syntax() {
            assert_eq!(
                read(r#"limit = { rate = 10, per = "per second" }"#),
                Err(r#"invalid quota: unknown unit "per second"; use s, min, h or d"#.to_owned())
            );
        }

        #[test]
        fn serializes_as_the_string_it_deserializes_from() {
            for quota in [
                Quota::per_second(3),
                Quota::per_minute(100).allow_burst(20),
                Quota::per_hour(5000),
                Quota::with_period(Duration::from_millis(250)),
            ] {
                let json = serde_json::to_string(&quota).unwrap();
                assert_eq!(json, format!("{:?}", quota.to_string()));
                assert_eq!(serde_json::from_str::<Quota>(&json).unwrap(), quota);
            }
            let daily = Quota::with_period(Duration::from_secs(7200)).allow_burst(3);
            assert_eq!(serde_json::to_string(&daily).unwrap(), r#""12/d; burst=3""#);
            assert_eq!(
                read(r#"limit = { rate = 12, per = "day", burst = 3 }"#),
                Ok(daily)
            );
            let odd = Quota::with_period(Duration::from_secs(18_000));
            let error = serde_json::to_string(&odd).unwrap_err().to_string();
            assert!(error.contains(&format!("{:?}", odd.to_string())), "{error}");
        }
    }
}
