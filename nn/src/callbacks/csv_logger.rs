//! Stream each epoch's logs to a CSV file (Keras's `CSVLogger`).

use super::{Callback, Control, Logs};
use crate::history::{csv_field, csv_value};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Writes a header `epoch,<log names, sorted>` and then one row per epoch (the epoch counting
/// from 0, as in Keras), flushing and syncing the file after every row so that a crash keeps
/// the finished epochs.
///
/// The file is opened when training begins: truncated, or with [`CsvLogger::append`] extended
/// (the header is then written only if the file is empty, and must match the existing one).
/// Values are written in Rust's shortest round-trip form (`NaN`, `inf` for non-finite ones);
/// a log missing from a later epoch is written `NA`. Errors name the file.
#[derive(Debug)]
pub struct CsvLogger {
    path: PathBuf,
    append: bool,
    separator: char,
    file: Option<File>,
    /// Columns of the file being written (`epoch` first), once known.
    columns: Option<Vec<String>>,
    /// The header of the file appended to, when it had one.
    existing_header: Option<String>,
}

impl CsvLogger {
    /// Logs to `path`, replacing it each time training begins.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger {
            path: path.into(),
            append: false,
            separator: ',',
            file: None,
            columns: None,
            existing_header: None,
        }
    }

    /// Appends to the file instead of replacing it.
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// The field separator (`,` by default).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn header_line(&self, columns: &[String]) -> String {
        let fields: Vec<String> = columns
            .iter()
            .map(|c| csv_field(c, self.separator))
            .collect();
        fields.join(&self.separator.to_string())
    }

    /// Opens the file; when appending, reads the existing header and ends a cut-off last line.
    fn open(&mut self) -> Result<File> {
        if !self.append {
            return File::create(&self.path).map_err(|e| self.io(e));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        if len > 0 {
            let mut first = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = file.read(&mut buf).map_err(|e| self.io(e))?;
                if n == 0 {
                    break;
                }
                match buf[..n].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        first.extend_from_slice(&buf[..i]);
                        break;
                    }
                    None => first.extend_from_slice(&buf[..n]),
                }
            }
            let header = String::from_utf8_lossy(&first)
                .trim_end_matches('\r')
                .to_string();
            self.existing_header = Some(header);
            file.seek(SeekFrom::Start(len - 1))
                .map_err(|e| self.io(e))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last).map_err(|e| self.io(e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(|e| self.io(e))?;
            }
        }
        Ok(file)
    }
}

impl Callback for CsvLogger {
    fn on_train_begin(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        self.columns = None;
        self.existing_header = None;
        self.file = None;
        self.file = Some(self.open()?);
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _ctx: &mut Control<'_>) -> Result<()> {
        let mut text = String::new();
        if self.columns.is_none() {
            let mut columns = vec![String::from("epoch")];
            columns.extend(logs.keys().cloned());
            let header = self.header_line(&columns);
            match &self.existing_header {
                Some(existing) if *existing != header => {
                    return Err(Error::config(format!(
                        "CsvLogger: {} has the header {existing:?}, but this training logs \
                         {header:?}; append to another file or set `append(false)`",
                        self.path.display()
                    )));
                }
                Some(_) => {}
                None => {
                    text.push_str(&header);
                    text.push('\n');
                }
            }
            self.columns = Some(columns);
        }
        let mut row = vec![epoch.to_string()];
        for column in self.columns.iter().flatten().skip(1) {
            row.push(csv_value(logs.get(column).copied()));
        }
        text.push_str(&row.join(&self.separator.to_string()));
        text.push('\n');
        let Some(file) = self.file.as_mut() else {
            return Err(Error::config(format!(
                "CsvLogger: {} is not open (on_epoch_end before on_train_begin)",
                self.path.display()
            )));
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_data());
        written.map_err(|e| self.io(e))
    }

    fn on_train_end(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}
