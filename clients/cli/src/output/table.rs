//! Plain-text tables: each cell padded to its column's width, so that the
//! rows of a table line up.

use std::fmt::{Display, Write};

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// One column of a table: the width its cells are padded to, on which side,
/// and how many spaces set it apart from the column before.
#[derive(Clone, Copy)]
pub struct Column {
    width: usize,
    align: Align,
    gap: usize,
}

impl Column {
    /// Text, padded on the right to `width`.
    pub const fn left(width: usize) -> Self {
        Column {
            width,
            align: Align::Left,
            gap: 1,
        }
    }

    /// Numbers, padded on the left to `width`.
    pub const fn right(width: usize) -> Self {
        Column {
            width,
            align: Align::Right,
            gap: 1,
        }
    }

    /// As wide as each cell's text: a last column, or one nothing lines up with.
    pub const fn unpadded() -> Self {
        Self::left(0)
    }

    /// Set apart from the column before by two spaces instead of one.
    pub const fn apart(self) -> Self {
        Column { gap: 2, ..self }
    }
}

/// The layout of a table; `row` prints one line of it.
pub struct Table {
    indent: usize,
    columns: &'static [Column],
}

impl Table {
    /// A table under a heading (the input it answers), indented by two spaces.
    pub const fn indented(columns: &'static [Column]) -> Self {
        Table { indent: 2, columns }
    }

    /// A table at the left margin.
    pub const fn flush(columns: &'static [Column]) -> Self {
        Table { indent: 0, columns }
    }

    /// Prints one row: a cell per column (numbers already formatted to the
    /// precision they are shown with).
    pub fn row(&self, cells: &[&dyn Display]) {
        println!("{}", self.line(cells));
    }

    /// The lines of a whole table, each padded column widened to its
    /// widest cell, so that rows line up whatever they hold.
    pub fn fitted(&self, rows: &[Vec<String>]) -> Vec<String> {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| match column.width {
                0 => 0,
                width => rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .fold(width, usize::max),
            })
            .collect();
        rows.iter()
            .map(|row| {
                let cells: Vec<&dyn Display> = row.iter().map(|c| c as &dyn Display).collect();
                self.line_in(&cells, &widths)
            })
            .collect()
    }

    fn line(&self, cells: &[&dyn Display]) -> String {
        let widths: Vec<usize> = self.columns.iter().map(|c| c.width).collect();
        self.line_in(cells, &widths)
    }

    fn line_in(&self, cells: &[&dyn Display], widths: &[usize]) -> String {
        assert_eq!(cells.len(), self.columns.len(), "a table row needs one cell per column");
        let mut line = " ".repeat(self.indent);
        for (i, (column, cell)) in self.columns.iter().zip(cells).enumerate() {
            if i > 0 {
                line.push_str(&" ".repeat(column.gap));
            }
            // Through a String: a Display that ignores width would not be padded.
            let cell = cell.to_string();
            let width = widths[i];
            let written = match column.align {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
            written.expect("writing to a String cannot fail");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_padded_on_their_columns_side_and_set_apart_by_the_gap() {
        const TABLE: Table = Table::indented(&[Column::left(6), Column::right(4), Column::unpadded().apart()]);
        assert_eq!(TABLE.line(&[&"ab", &7, &"rest"]), "  ab        7  rest");
    }

    #[test]
    fn a_cell_wider_than_its_column_is_printed_whole() {
        const TABLE: Table = Table::flush(&[Column::left(2), Column::unpadded()]);
        assert_eq!(TABLE.line(&[&"wider", &"x"]), "wider x");
    }

    #[test]
    fn a_fitted_table_widens_a_column_to_its_widest_cell_on_every_row() {
        const TABLE: Table = Table::flush(&[Column::left(4), Column::right(2), Column::unpadded()]);
        let rows = [
            vec!["name".to_string(), "1".into(), "x".into()],
            vec!["longer-name".to_string(), "100".into(), "y".into()],
        ];
        assert_eq!(TABLE.fitted(&rows), ["name          1 x", "longer-name 100 y"]);
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        const TABLE: Table = Table::flush(&[Column::left(4), Column::unpadded()]);
        assert_eq!(TABLE.line(&[&"été", &"|"]), "été  |");
    }
}
