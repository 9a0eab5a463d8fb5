//! lumu's record checks in native code: a batch of record values checked in one pass, without
//! the GIL. The Python definition (lumu_cli/events.py, lumu_cli/timestamps.py) decides every
//! record this is not certain of; lumu_cli/native_events.py joins the two.
//!
//! No `unsafe` here: the values are read through PyO3's safe views, and a panic is caught and
//! answered with None, for the caller to check that batch with the definition.

#![forbid(unsafe_code)]

mod event;
mod stamp;

use std::panic::{self, AssertUnwindSafe};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use event::{Ip, Outcome, UNSURE, VALID};
use stamp::Unit;

/// What `check` found in a batch, in flat arrays for numpy: one reason code per record, the
/// IPv4 addresses sorted (their times in the same order), the IPv6 ones in record order.
#[derive(Default)]
struct Checked {
    reasons: Vec<u8>,
    v4: Vec<(u32, i64)>,
    v6: Vec<u8>,
    v6_millis: Vec<u8>,
}

fn check_all(values: &[Option<&[u8]>]) -> Checked {
    let mut out = Checked { reasons: Vec::with_capacity(values.len()), ..Checked::default() };
    for value in values {
        match event::check(*value) {
            Outcome::Counted(Ip::V4(ip), millis) => {
                out.reasons.push(VALID);
                out.v4.push((ip, millis));
            }
            Outcome::Counted(Ip::V6(ip), millis) => {
                out.reasons.push(VALID);
                out.v6.extend_from_slice(&ip);
                out.v6_millis.extend_from_slice(&millis.to_ne_bytes());
            }
            Outcome::Invalid(reason) => out.reasons.push(reason),
            Outcome::Unsure => out.reasons.push(UNSURE),
        }
    }
    out.v4.sort_unstable_by_key(|&(ip, _)| ip); // an address seen twice: either time first
    out
}

/// `work()` without the GIL; None if it panicked (the panic hook set below says nothing).
fn guarded<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> Option<T> {
    py.allow_threads(|| panic::catch_unwind(AssertUnwindSafe(work)).ok())
}

/// A panic inside, as `check` and `parse_lines` would meet one: None (tests hold the Python
/// side to checking such a batch with the definition).
#[pyfunction]
fn _panic_inside(py: Python<'_>) -> Option<u8> {
    guarded(py, || -> u8 { panic!("as a bug would") })
}

/// Check a batch of record values (bytes, or None for a tombstone).
///
/// Returns None if the checker failed (a bug: the caller checks the batch with the definition),
/// else (reasons, v4, v4_millis, v6, v6_millis) as bytes: a code per record (0 valid, 1..8
/// events.Reason in order, 255 unsure), then uint32 and int64 arrays in native byte order and
/// 16-byte IPv6 addresses. A value of another type is unsure.
#[pyfunction]
fn check<'py>(py: Python<'py>, values: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let items: Vec<Bound<'py, PyAny>> = values.try_iter()?.collect::<PyResult<_>>()?;
    let mut foreign = Vec::new();
    let views: Vec<Option<&[u8]>> = items
        .iter()
        .enumerate()
        .map(|(row, item)| match item.downcast::<PyBytes>() {
            Ok(bytes) => Some(bytes.as_bytes()),
            Err(_) => {
                if !item.is_none() {
                    foreign.push(row);
                }
                None
            }
        })
        .collect();
    let mut found = match guarded(py, || check_all(&views)) {
        Some(found) => found,
        None => return Ok(None),
    };
    for row in foreign {
        found.reasons[row] = UNSURE;
    }
    let mut v4 = Vec::with_capacity(found.v4.len() * 4);
    let mut v4_millis = Vec::with_capacity(found.v4.len() * 8);
    for (ip, millis) in &found.v4 {
        v4.extend_from_slice(&ip.to_ne_bytes());
        v4_millis.extend_from_slice(&millis.to_ne_bytes());
    }
    let parts = [&found.reasons, &v4, &v4_millis, &found.v6, &found.v6_millis];
    Ok(Some(PyTuple::new(py, parts.iter().map(|part| PyBytes::new(py, part)))?))
}

/// The lines of `data` (each ending in a newline; a carriage return before it is dropped) that
/// the common shapes surely read, as tsstream's arrays read them.
///
/// Returns None if the parser failed, else (ok, rendered, millis) as bytes: 1 or 0 per line,
/// 25 bytes per line (`YYYY-MM-DDTHH:MM:SS.mmmZ\n`, zeros where not ok; empty unless `render`)
/// and int64 epoch milliseconds per line in native byte order (0 where not ok).
#[pyfunction]
#[pyo3(signature = (data, *, unit = "auto", naive_utc = true, render = true))]
fn parse_lines<'py>(
    py: Python<'py>,
    data: &[u8],
    unit: &str,
    naive_utc: bool,
    render: bool,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let unit = Unit::from_name(unit).ok_or_else(|| PyValueError::new_err(format!("unit {unit:?}")))?;
    let parsed = guarded(py, || {
        let count = memchr::memchr_iter(b'\n', data).count();
        let mut ok = Vec::with_capacity(count);
        let mut millis = Vec::with_capacity(count * 8);
        let mut rendered = Vec::with_capacity(if render { count * stamp::OUT_WIDTH } else { 0 });
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            let line = &data[start..end];
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let found = stamp::parse(line, unit, naive_utc);
            ok.push(u8::from(found.is_some()));
            millis.extend_from_slice(&found.unwrap_or(0).to_ne_bytes());
            if render {
                rendered.extend_from_slice(&found.map_or([0; stamp::OUT_WIDTH], stamp::render));
            }
        }
        (ok, rendered, millis)
    });
    let (ok, rendered, millis) = match parsed {
        Some(parsed) => parsed,
        None => return Ok(None),
    };
    let parts = [&ok, &rendered, &millis];
    Ok(Some(PyTuple::new(py, parts.iter().map(|part| PyBytes::new(py, part)))?))
}

#[pymodule]
fn lumu_native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    panic::set_hook(Box::new(|_| {})); // a panic is answered with None; the caller tells it
    module.add("REASONS", event::REASONS.to_vec())?;
    module.add("UNSURE", UNSURE)?;
    module.add_function(wrap_pyfunction!(check, module)?)?;
    module.add_function(wrap_pyfunction!(parse_lines, module)?)?;
    module.add_function(wrap_pyfunction!(_panic_inside, module)?)?;
    Ok(())
}
