//! Tables on stdout, in the borderless style of `kubectl get`.

use comfy_table::{Table, presets};

/// A borderless table with a header row.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    t
}
