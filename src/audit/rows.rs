//! Result rows kept for replay. Fed the RowDescription and DataRow messages exactly as
//! they go to the client; the masking code calls it with the rewritten (masked) bytes,
//! so no unmasked value is ever kept.

use serde_json::Value;

use super::record::hex;
use crate::protocol::backend_view::{DataRow, RowDescription};

#[derive(Debug, Default)]
pub struct RowRecorder {
    limit: usize,
    /// The last RowDescription body read, its column names, and per column whether
    /// it is binary: a prepared statement describes the same at every execution, and
    /// is read once.
    described: Vec<u8>,
    columns: Vec<String>,
    binary: Vec<bool>,
    /// The result answered now was described: its columns are the ones above.
    current: bool,
    /// `columns` went out with a record ([`RowRecorder::take`]) and has not come
    /// back ([`RowRecorder::give_back`]): the next description is read again.
    lent: bool,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

/// Text from the wire: valid UTF-8 (nearly always) is checked with the fast validator,
/// anything else keeps its valid parts (U+FFFD for the rest).
pub fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

impl RowRecorder {
    pub fn new(limit: usize) -> RowRecorder {
        RowRecorder {
            limit,
            ..Default::default()
        }
    }

    /// A whole RowDescription message (tag and length included). A malformed one is
    /// ignored: the recorder is evidence, not a parser the session depends on.
    pub fn row_description(&mut self, msg: &[u8]) {
        let body = msg.get(5..).unwrap_or(&[]);
        if !self.lent && !self.described.is_empty() && self.described == body {
            self.current = true;
            return;
        }
        let Ok(t) = RowDescription::parse(body) else {
            return;
        };
        self.columns = t.fields().map(|f| lossy(f.name)).collect();
        self.lent = false;
        self.binary = t.fields().map(|f| f.format == 1).collect();
        self.described.clear();
        self.described.extend_from_slice(body);
        self.current = true;
    }

    /// No more rows will be kept for this result.
    pub fn full(&self) -> bool {
        self.rows.len() >= self.limit
    }

    /// A whole DataRow message, in the formats its RowDescription said.
    pub fn data_row(&mut self, msg: &[u8]) {
        self.data_row_in(msg, None)
    }

    /// A whole DataRow message. `formats` are the result format codes Bind asked for
    /// (extended protocol: a statement's RowDescription says "text" before they are
    /// known); none means all text, one applies to every column.
    pub fn data_row_in(&mut self, msg: &[u8], formats: Option<&[i16]>) {
        if self.rows.len() >= self.limit {
            self.truncated = self.truncated || self.limit > 0;
            return;
        }
        let Ok(d) = DataRow::parse(msg.get(5..).unwrap_or(&[])) else {
            return;
        };
        let mut row = Vec::with_capacity(d.values.len());
        for (i, v) in d.values.iter().enumerate() {
            let Some(v) = v else {
                row.push(Value::Null);
                continue;
            };
            let binary = match formats {
                None => self.current && self.binary.get(i).copied().unwrap_or(false),
                Some([]) => false,
                Some([one]) => *one == 1,
                Some(per) => per.get(i).is_none_or(|f| *f == 1),
            };
            row.push(if binary {
                Value::String(format!("\\x{}", hex(v)))
            } else {
                Value::String(lossy(v))
            });
        }
        self.rows.push(row);
    }

    /// Everything kept since the last take: columns (only with rows: columns alone
    /// say nothing), rows, and whether rows were cut. The columns are lent, not
    /// copied: until [`RowRecorder::give_back`] returns them, the next
    /// RowDescription is read anew.
    pub fn take(&mut self) -> (Vec<String>, Vec<Vec<Value>>, bool) {
        let t = std::mem::take(&mut self.truncated);
        let rows = std::mem::take(&mut self.rows);
        let columns = if self.current && !rows.is_empty() {
            self.lent = true;
            std::mem::take(&mut self.columns)
        } else {
            Vec::new()
        };
        self.current = false;
        (columns, rows, t)
    }

    /// What [`RowRecorder::take`] gave out, once its record is written: the columns
    /// serve the next result of the same description again, and the rows' memory the
    /// next rows (each statement's record would otherwise allocate both anew).
    pub fn give_back(&mut self, columns: Vec<String>, mut rows: Vec<Vec<Value>>) {
        if self.lent && !columns.is_empty() {
            self.columns = columns;
            self.lent = false;
        }
        if self.rows.is_empty() && rows.capacity() <= self.limit {
            rows.clear();
            self.rows = rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn keeps_up_to_the_limit() {
        let mut desc = 2i16.to_be_bytes().to_vec();
        for (name, fmt) in [("id", 0i16), ("blob", 1)] {
            desc.extend_from_slice(name.as_bytes());
            desc.push(0);
            desc.extend_from_slice(&[0; 4 + 2 + 4 + 2 + 4]);
            desc.extend_from_slice(&fmt.to_be_bytes());
        }
        let mut row = 2i16.to_be_bytes().to_vec();
        row.extend_from_slice(&1i32.to_be_bytes());
        row.push(b'7');
        row.extend_from_slice(&2i32.to_be_bytes());
        row.extend_from_slice(&[0xde, 0xad]);
        let mut null_row = 2i16.to_be_bytes().to_vec();
        null_row.extend_from_slice(&(-1i32).to_be_bytes());
        null_row.extend_from_slice(&(-1i32).to_be_bytes());

        let mut r = RowRecorder::new(2);
        r.row_description(&msg(b'T', &desc));
        r.data_row(&msg(b'D', &row));
        r.data_row(&msg(b'D', &null_row));
        r.data_row(&msg(b'D', &row));
        r.data_row(&msg(b'D', b"\x00")); // malformed: ignored, no panic
        let (cols, rows, cut) = r.take();
        assert_eq!(cols, ["id", "blob"]);
        assert_eq!(rows[0], [Value::from("7"), Value::from("\\xdead")]);
        assert_eq!(rows[1], [Value::Null, Value::Null]);
        assert!(cut);
        assert_eq!(r.take().1.len(), 0);
    }

    /// A description read once is reused for the same bytes only: each result gets
    /// its own statement's column names and formats, and a result with no
    /// description of its own gets none.
    #[test]
    fn each_result_gets_its_own_description() {
        let desc = |name: &str, fmt: i16| {
            let mut d = 1i16.to_be_bytes().to_vec();
            d.extend_from_slice(name.as_bytes());
            d.push(0);
            d.extend_from_slice(&[0; 4 + 2 + 4 + 2 + 4]);
            d.extend_from_slice(&fmt.to_be_bytes());
            msg(b'T', &d)
        };
        let mut row = 1i16.to_be_bytes().to_vec();
        row.extend_from_slice(&1i32.to_be_bytes());
        row.push(b'7');
        let row = msg(b'D', &row);
        let mut r = RowRecorder::new(10);
        for _ in 0..2 {
            r.row_description(&desc("a", 0));
            r.data_row(&row);
            assert_eq!(
                r.take(),
                (vec!["a".to_string()], vec![vec![Value::from("7")]], false)
            );
        }
        r.row_description(&desc("b", 1));
        r.data_row(&row);
        assert_eq!(r.take().0, ["b"]);
        assert_eq!(r.take().1.len(), 0);
        // No description of its own (or an unreadable one): no columns, rows as text.
        r.data_row(&row);
        assert_eq!(r.take(), (vec![], vec![vec![Value::from("7")]], false));
        r.row_description(&msg(b'T', b"\x00"));
        r.data_row(&row);
        assert_eq!(r.take(), (vec![], vec![vec![Value::from("7")]], false));
        // Described but no rows kept: columns alone say nothing.
        r.row_description(&desc("b", 1));
        assert_eq!(r.take(), (vec![], vec![], false));
    }

    /// Columns lent to a record come back for the next result of the same
    /// description; a record that keeps them (its queue was full) leaves the next
    /// description to be read anew, never to reuse nothing.
    #[test]
    fn lent_columns_come_back_or_are_read_again() {
        let mut d = 1i16.to_be_bytes().to_vec();
        d.extend_from_slice(b"aid\0");
        d.extend_from_slice(&[0; 4 + 2 + 4 + 2 + 4]);
        d.extend_from_slice(&0i16.to_be_bytes());
        let desc = msg(b'T', &d);
        let mut row = 1i16.to_be_bytes().to_vec();
        row.extend_from_slice(&1i32.to_be_bytes());
        row.push(b'7');
        let row = msg(b'D', &row);
        let mut r = RowRecorder::new(10);
        let expected = (vec!["aid".to_string()], vec![vec![Value::from("7")]], false);
        // Given back: reused.
        r.row_description(&desc);
        r.data_row(&row);
        let (cols, rows, cut) = r.take();
        assert_eq!((cols.clone(), rows.clone(), cut), expected);
        r.give_back(cols, rows);
        r.row_description(&desc);
        r.data_row(&row);
        let (cols, rows, cut) = r.take();
        assert_eq!((cols, rows, cut), expected);
        // Not given back (the last take's columns kept elsewhere): read again.
        r.row_description(&desc);
        r.data_row(&row);
        assert_eq!(r.take(), expected);
        // Rows given back come back empty.
        r.give_back(Vec::new(), vec![vec![Value::from("old")]]);
        r.row_description(&desc);
        r.data_row(&row);
        assert_eq!(r.take(), expected);
    }
}
