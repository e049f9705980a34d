//! `kiln top CONTAINER [ps OPTIONS]`: flags → [`kiln_runtime::Container::top`] → docker's
//! table.

use crate::util::{Env, Failure};
use clap::Args;

#[derive(Args)]
pub(crate) struct TopArgs {
    /// The container (name, id or id prefix).
    container: String,
    /// Options for ps (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

pub(crate) fn top(env: &Env, a: TopArgs) -> Result<u8, Failure> {
    let mut c = crate::containers::find(env, &a.container)?;
    let top = c.top(&a.ps_args).map_err(|e| Failure::wrap(1, e))?;
    let mut rows = vec![top.titles];
    rows.extend(top.processes);
    print!("{}", tabwrite(&rows));
    Ok(0)
}

/// Docker's `tabwriter.NewWriter(out, 20, 1, 3, ' ', 0)`: every column but the last at least
/// 20 wide and 3 wider than its widest cell.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count() + 3).max(20);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_at_least_twenty_wide() {
        let rows = vec![
            vec!["UID".to_string(), "PID".to_string(), "CMD".to_string()],
            vec![
                "root".to_string(),
                "4242".to_string(),
                "sleep 100".to_string(),
            ],
        ];
        let pad = |s: &str| format!("{s:<20}");
        assert_eq!(
            tabwrite(&rows),
            format!(
                "{}{}CMD\n{}{}sleep 100\n",
                pad("UID"),
                pad("PID"),
                pad("root"),
                pad("4242")
            )
        );
    }
}
