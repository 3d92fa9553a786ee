//! Field offsets of tracepoint records, read from tracefs `format` files so nothing depends
//! on a kernel's layout.
use std::path::Path;

use anyhow::{Context, anyhow};

/// Offset of `field` in a tracepoint `format` file's text.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        // "\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;"
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Offset of `field` in tracepoint `category/name`.
pub fn offset(tracefs: &Path, category: &str, name: &str, field: &str) -> anyhow::Result<u32> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    field_offset(&text, field).ok_or_else(|| anyhow!("{}: no field `{field}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = "name: sched_process_exec\nID: 318\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n";

    #[test]
    fn finds_offsets() {
        assert_eq!(field_offset(EXEC, "filename"), Some(8));
        assert_eq!(field_offset(EXEC, "old_pid"), Some(16));
        assert_eq!(field_offset(EXEC, "pid"), Some(12));
        assert_eq!(field_offset(EXEC, "missing"), None);
    }

    #[test]
    fn array_fields_match_by_name() {
        let f = "\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n";
        assert_eq!(field_offset(f, "child_comm"), Some(28));
    }
}
