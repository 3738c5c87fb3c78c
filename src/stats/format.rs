//! Numbers as every report prints them: one formatter for latencies, so a
//! value reads the same in the summary, the diagnosis, the capacity table
//! and the HTML page.

/// What a table shows for a value that was not measured.
pub const NONE: &str = "–";

/// A latency in milliseconds as a number, with the same precision wherever
/// it is printed: whole above 100, one decimal above 10, two below.
pub fn ms_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency that may be missing ([`NONE`]) or reached by failures (`∞`).
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => NONE.into(),
        Some(x) if x.is_infinite() => "∞".into(),
        Some(x) => ms_number(x),
    }
}

/// As [`ms`], with the unit after a number (`81.2 ms`).
pub fn ms_unit(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{} ms", ms_number(x)),
        other => ms(other),
    }
}

/// A number without trailing zeros: 800, 0.5, 12.25.
pub fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_to_print_a_latency() {
        assert_eq!(ms(None), "–");
        assert_eq!(ms(Some(f64::INFINITY)), "∞");
        assert_eq!(ms(Some(1234.4)), "1234");
        assert_eq!(ms(Some(81.26)), "81.3");
        assert_eq!(ms(Some(8.014)), "8.01");
        assert_eq!(ms_unit(Some(81.26)), "81.3 ms");
        assert_eq!(ms_unit(None), "–");
    }
}
