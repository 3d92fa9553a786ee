//! Policy: groups of endpoints, rules between them, a catch-all; versions that people
//! apply (draft) and publish; and the compliance verdict of every flow against the
//! published version. See `docs/policy.md`.
pub mod compile;
pub mod diff;
pub mod document;
pub mod eval;
pub mod state;

pub use compile::{Compiled, compile};
pub use document::{Action, Document, PolicyError, Rank, Severity, parse};
pub use eval::{Context, Decision, Evaluator, FlowView, HostFacts, Matched};

/// Parses and compiles a policy file: every error names the line and the field.
pub fn load(text: &str) -> Result<(Document, Compiled), PolicyError> {
    let doc = parse(text)?;
    let compiled = compile(&doc)?;
    Ok((doc, compiled))
}

#[cfg(test)]
mod tests;
