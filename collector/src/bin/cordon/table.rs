//! Plain text tables: columns as wide as their widest cell.
use std::time::{Duration, UNIX_EPOCH};

pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Unix ns as UTC time to the second; "-" when absent.
pub fn time(ns: Option<u64>) -> String {
    ns.filter(|n| *n > 0).map_or_else(
        || "-".into(),
        |n| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(n)).to_string(),
    )
}
