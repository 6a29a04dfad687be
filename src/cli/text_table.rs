//! Aligned text tables for the terminal, columns padded to their widest cell.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The widest a cell of table data is shown; longer values end in `…`.
const CELL_WIDTH: usize = 48;

pub struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn new(header: &[&str]) -> Self {
        TextTable { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A table headed by a schema's column names.
    pub fn for_schema(schema: &Schema) -> Self {
        TextTable::new(&schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Adds a batch's rows, each cell on one line and at most `CELL_WIDTH` characters,
    /// until the table holds `limit` rows.
    pub fn push_batch(&mut self, batch: &RecordBatch, limit: usize) -> Result<(), ArrowError> {
        let options = FormatOptions::default().with_null("null");
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if self.rows.len() >= limit {
                break;
            }
            self.rows.push(formatters.iter().map(|f| cell(&f.value(row).to_string())).collect());
        }
        Ok(())
    }

    pub fn render(&self) -> String {
        let width = |c: &str| c.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(widths[i] - width(cell) + 2));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// One line, at most `CELL_WIDTH` characters.
fn cell(text: &str) -> String {
    let flat = text.replace('\n', "⏎");
    if flat.chars().count() <= CELL_WIDTH {
        flat
    } else {
        flat.chars().take(CELL_WIDTH - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut t = TextTable::new(&["a", "bb"]);
        t.row(vec!["xxx".into(), "y".into()]);
        assert_eq!(t.render(), "a    bb\nxxx  y\n");
    }
}
