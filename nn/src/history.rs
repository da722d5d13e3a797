//! What `fit` returns: the logs of every epoch, with JSON and CSV export and a PNG plot.
//!
//! JSON keeps every value, NaN and infinities included (written as the strings `"NaN"`,
//! `"Infinity"` and `"-Infinity"`, which plain JSON numbers cannot hold). Files are written
//! atomically: a temporary file beside the target, fsync, rename.

use crate::callbacks::Logs;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Per-epoch loss and metrics, as Keras's `History`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    /// Epoch numbers (0-based).
    pub epochs: Vec<usize>,
    /// Seconds each epoch took (training only).
    #[serde(with = "floats::vec")]
    pub seconds: Vec<f64>,
    /// Each log's values, one per epoch.
    #[serde(with = "floats::map")]
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl History {
    /// Records one epoch.
    pub fn push(&mut self, epoch: usize, seconds: f64, logs: &Logs) {
        self.epochs.push(epoch);
        self.seconds.push(seconds);
        for (k, v) in logs {
            self.metrics.entry(k.clone()).or_default().push(*v);
        }
    }

    /// The values of one log ("loss", "val_accuracy", …).
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.metrics.get(name).map(|v| v.as_slice())
    }

    /// The last value of a log.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|v| v.last().copied())
    }

    /// The history as pretty-printed JSON: `{"epochs": […], "seconds": […], "metrics":
    /// {"loss": […], …}}`. Non-finite values are written as `"NaN"`, `"Infinity"` or
    /// `"-Infinity"`.
    pub fn to_json(&self) -> String {
        // Serialising plain vectors and string-keyed maps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Reads a history from [`History::to_json`]'s format. Also accepts Keras's
    /// `json.dumps(history.history)` form, an object of per-epoch lists (`{"loss": […]}`),
    /// numbering its epochs from 0. Numbers may be `null` (read as NaN) or the strings
    /// `"NaN"`, `"Infinity"`, `"-Infinity"`.
    pub fn from_json(json: &str) -> Result<History> {
        parse_json(json, "<history JSON>")
    }

    /// Reads a history written by [`History::save_json`].
    pub fn load_json(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        parse_json(&text, &path.display().to_string())
    }

    /// The history as CSV: a header `epoch,seconds,<log names, sorted>`, then one row per
    /// epoch. Values are written in Rust's shortest round-trip form (`NaN`, `inf` and `-inf`
    /// for non-finite ones); a value an epoch lacks is written `NA`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch,seconds");
        for name in self.metrics.keys() {
            out.push(',');
            out.push_str(&csv_field(name, ','));
        }
        out.push('\n');
        for (i, epoch) in self.epochs.iter().enumerate() {
            out.push_str(&epoch.to_string());
            out.push(',');
            out.push_str(&csv_value(self.seconds.get(i).copied()));
            for values in self.metrics.values() {
                out.push(',');
                out.push_str(&csv_value(values.get(i).copied()));
            }
            out.push('\n');
        }
        out
    }

    /// Writes [`History::to_json`] to `path` atomically.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomically(path.as_ref(), self.to_json().as_bytes())
    }

    /// Writes [`History::to_csv`] to `path` atomically.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomically(path.as_ref(), self.to_csv().as_bytes())
    }

    /// Renders the learning curves to a PNG at `path` with [`PlotOptions::default`]: a "loss"
    /// panel (`loss`, `val_loss`) and, when the history has accuracies, an "accuracy" panel
    /// (`accuracy`, `val_accuracy`, `top_k_accuracy`, …), against the epoch number.
    ///
    /// Titles, axis labels and legends need a TrueType font: the file named by the
    /// `HASTEN_PLOT_FONT` environment variable, or a common system font (DejaVu Sans,
    /// Liberation Sans, Noto Sans, FreeSans, Arial). Without one the curves and grid are
    /// still drawn, without text (see [`plot_font_available`]). The PNG is written
    /// atomically, whatever `path`'s extension.
    pub fn save_plot(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_plot_with(path, &PlotOptions::default())
    }

    /// [`History::save_plot`] with explicit options.
    pub fn save_plot_with(&self, path: impl AsRef<Path>, options: &PlotOptions) -> Result<()> {
        plot::save(self, path.as_ref(), options)
    }

    fn check(&self, origin: &str) -> Result<()> {
        let n = self.epochs.len();
        let too_long = |what: &str, len: usize| Error::Format {
            path: origin.to_string(),
            detail: format!("{what} has {len} values but there are only {n} epochs"),
        };
        if self.seconds.len() > n {
            return Err(too_long("\"seconds\"", self.seconds.len()));
        }
        for (name, values) in &self.metrics {
            if values.len() > n {
                return Err(too_long(&format!("metric {name:?}"), values.len()));
            }
        }
        Ok(())
    }
}

/// How [`History::save_plot_with`] draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotOptions {
    /// Width of each panel, in pixels (at least 64).
    pub panel_width: u32,
    /// Height of the image, in pixels (at least 64).
    pub height: u32,
    /// Draw titles, axis labels and legends when a font is available; `false` draws only the
    /// curves, axes and grid.
    pub text: bool,
}

impl Default for PlotOptions {
    /// 640×480 per panel, with text.
    fn default() -> Self {
        PlotOptions {
            panel_width: 640,
            height: 480,
            text: true,
        }
    }
}

/// Whether [`History::save_plot`] can draw text here: the first call looks for a font (see
/// [`History::save_plot`]) and registers it with `plotters`.
pub fn plot_font_available() -> bool {
    plot::font_available()
}

/// Quotes a CSV field when it holds the separator, a quote or a line break.
pub(crate) fn csv_field(field: &str, separator: char) -> String {
    if field.contains([separator, '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A CSV cell for a value, `NA` when there is none.
pub(crate) fn csv_value(value: Option<f64>) -> String {
    value.map_or_else(|| String::from("NA"), |v| v.to_string())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    hasten_tensor::io::write_atomically(path, bytes).map_err(|e| match e {
        hasten_tensor::Error::Io { path, source } => Error::Io { path, source },
        other => Error::Tensor(other),
    })
}

fn parse_json(text: &str, origin: &str) -> Result<History> {
    let format = |e: serde_json::Error| Error::Format {
        path: origin.to_string(),
        detail: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(format)?;
    let object = value.as_object().ok_or_else(|| Error::Format {
        path: origin.to_string(),
        detail: "expected a JSON object".into(),
    })?;
    let ours = ["epochs", "seconds", "metrics"];
    let history = if object.keys().any(|k| ours.contains(&k.as_str())) {
        serde_json::from_value::<History>(value).map_err(format)?
    } else {
        // Keras's `history.history`: log name → per-epoch values.
        let metrics: BTreeMap<String, Vec<floats::Lenient>> =
            serde_json::from_value(value).map_err(format)?;
        let metrics: BTreeMap<String, Vec<f64>> = metrics
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|x| x.0).collect()))
            .collect();
        let n = metrics.values().map(Vec::len).max().unwrap_or(0);
        History {
            epochs: (0..n).collect(),
            seconds: Vec::new(),
            metrics,
        }
    };
    history.check(origin)?;
    Ok(history)
}

/// Serde helpers that keep NaN and infinities in human-readable formats (JSON has no literal
/// for them) and read `null` as NaN.
mod floats {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::Serializer;
    use serde::{Deserialize, Serialize};
    use std::fmt;

    /// An `f64` that survives JSON whatever its value.
    #[derive(Clone, Copy, Debug)]
    pub struct Lenient(pub f64);

    impl Serialize for Lenient {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let v = self.0;
            if v.is_finite() || !s.is_human_readable() {
                s.serialize_f64(v)
            } else if v.is_nan() {
                s.serialize_str("NaN")
            } else if v > 0.0 {
                s.serialize_str("Infinity")
            } else {
                s.serialize_str("-Infinity")
            }
        }
    }

    struct LenientVisitor;

    impl Visitor<'_> for LenientVisitor {
        type Value = Lenient;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, null, \"NaN\", \"Infinity\" or \"-Infinity\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
            Ok(Lenient(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
            Ok(Lenient(v as f64))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
            Ok(Lenient(v as f64))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
            Ok(Lenient(f64::NAN))
        }

        fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
            Ok(Lenient(f64::NAN))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
            match v.to_ascii_lowercase().as_str() {
                "nan" => Ok(Lenient(f64::NAN)),
                "infinity" | "inf" | "+infinity" | "+inf" => Ok(Lenient(f64::INFINITY)),
                "-infinity" | "-inf" => Ok(Lenient(f64::NEG_INFINITY)),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }

    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient, D::Error> {
            if d.is_human_readable() {
                d.deserialize_any(LenientVisitor)
            } else {
                f64::deserialize(d).map(Lenient)
            }
        }
    }

    /// `Vec<f64>` fields.
    pub mod vec {
        use super::Lenient;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes the values leniently.
        pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(values.iter().map(|v| Lenient(*v)))
        }

        /// Reads the values leniently.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
            let v = Vec::<Lenient>::deserialize(d)?;
            Ok(v.into_iter().map(|x| x.0).collect())
        }
    }

    /// `BTreeMap<String, Vec<f64>>` fields.
    pub mod map {
        use super::Lenient;
        use serde::{Deserialize, Deserializer, Serializer};
        use std::collections::BTreeMap;

        /// Writes the values leniently.
        pub fn serialize<S: Serializer>(
            map: &BTreeMap<String, Vec<f64>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_map(
                map.iter()
                    .map(|(k, v)| (k, v.iter().map(|x| Lenient(*x)).collect::<Vec<_>>())),
            )
        }

        /// Reads the values leniently.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<String, Vec<f64>>, D::Error> {
            let m = BTreeMap::<String, Vec<Lenient>>::deserialize(d)?;
            Ok(m.into_iter()
                .map(|(k, v)| (k, v.into_iter().map(|x| x.0).collect()))
                .collect())
        }
    }
}

/// The PNG learning curves.
mod plot {
    use super::{History, PlotOptions};
    use crate::{Error, Result};
    use plotters::prelude::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The family name fonts are registered under (plotters' default family).
    const FAMILY: &str = "sans-serif";

    /// Where common sans-serif TrueType fonts live on Linux, macOS and Windows.
    const FONT_PATHS: &[&str] = &[
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/google-noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
        "/usr/share/fonts/gnu-free/FreeSans.ttf",
        "/usr/local/share/fonts/DejaVuSans.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];

    /// Fonts larger than this are not fonts we want to load.
    const MAX_FONT_BYTES: u64 = 64 << 20;

    static FONT: OnceLock<bool> = OnceLock::new();

    fn try_register(path: &Path) -> bool {
        let small = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= MAX_FONT_BYTES);
        if !small {
            return false;
        }
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        // plotters keeps fonts for the life of the process; this runs at most once per
        // candidate, and only until one registers.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
    }

    pub(super) fn font_available() -> bool {
        *FONT.get_or_init(|| {
            let from_env = std::env::var_os("HASTEN_PLOT_FONT");
            from_env
                .iter()
                .map(Path::new)
                .chain(FONT_PATHS.iter().map(Path::new))
                .any(try_register)
        })
    }

    /// Learning-curve panels: a title and the logs it shows.
    fn panels(history: &History) -> Vec<(&'static str, Vec<&str>)> {
        let mut loss = Vec::new();
        let mut accuracy = Vec::new();
        for name in history.metrics.keys() {
            let base = name.strip_prefix("val_").unwrap_or(name);
            if base == "loss" {
                loss.push(name.as_str());
            } else if base.contains("acc") {
                accuracy.push(name.as_str());
            }
        }
        // Training curves before validation curves.
        let order = |n: &&str| {
            (
                n.starts_with("val_"),
                n.strip_prefix("val_").unwrap_or(n).len(),
            )
        };
        loss.sort_by_key(order);
        accuracy.sort_by_key(order);
        let mut out = vec![("loss", loss)];
        if !accuracy.is_empty() {
            out.push(("accuracy", accuracy));
        }
        out
    }

    /// Finite `(epoch, value)` points of one log.
    fn points(history: &History, name: &str) -> Vec<(f64, f64)> {
        let values = history.get(name).unwrap_or(&[]);
        history
            .epochs
            .iter()
            .zip(values)
            .filter(|(_, v)| v.is_finite())
            .map(|(e, v)| (*e as f64, *v))
            .collect()
    }

    /// `lo..hi` widened so that a flat or empty series still gets a visible range.
    fn range(values: impl Iterator<Item = f64>, pad_fraction: f64) -> (f64, f64) {
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !lo.is_finite() || !hi.is_finite() {
            return (0.0, 1.0);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
            return (lo - pad, hi + pad);
        }
        let pad = (hi - lo) * pad_fraction;
        (lo - pad, hi + pad)
    }

    fn color(i: usize, validation: bool) -> RGBColor {
        const TRAIN: [RGBColor; 3] = [
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
            RGBColor(148, 103, 189),
        ];
        const VAL: [RGBColor; 3] = [
            RGBColor(255, 127, 14),
            RGBColor(214, 39, 40),
            RGBColor(140, 86, 75),
        ];
        if validation {
            VAL[i % VAL.len()]
        } else {
            TRAIN[i % TRAIN.len()]
        }
    }

    fn epoch_label(x: &f64) -> String {
        if (x - x.round()).abs() < 1e-6 {
            format!("{}", x.round())
        } else {
            String::new()
        }
    }

    fn value_label(y: &f64) -> String {
        let a = y.abs();
        if a != 0.0 && !(1e-3..1e4).contains(&a) {
            return format!("{y:.1e}");
        }
        let text = format!("{y:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            String::from("0")
        } else {
            text.to_string()
        }
    }

    static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

    pub(super) fn save(history: &History, path: &Path, options: &PlotOptions) -> Result<()> {
        if history.epochs.is_empty() {
            return Err(Error::config(format!(
                "{}: the history has no epochs to plot",
                path.display()
            )));
        }
        let text = options.text && font_available();
        let panels = panels(history);
        let width = options.panel_width.max(64) * panels.len() as u32;
        let height = options.height.max(64);

        // plotters writes through the `image` crate, which picks the format from the
        // extension: render to a `.png` beside the target, then move it into place
        // atomically.
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| String::from("plot"));
        let tmp = dir.join(format!(
            ".{name}.render-{}-{}.png",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |source: std::io::Error| Error::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let rendered = render(history, &tmp, (width, height), &panels, text)
            .map_err(|e| io(std::io::Error::other(format!("drawing the plot: {e}"))))
            .and_then(|()| std::fs::read(&tmp).map_err(io));
        let _ = std::fs::remove_file(&tmp);
        super::write_atomically(path, &rendered?)
    }

    type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn render(
        history: &History,
        tmp: &Path,
        size: (u32, u32),
        panels: &[(&'static str, Vec<&str>)],
        text: bool,
    ) -> DrawResult {
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len()));
        for ((title, names), area) in panels.iter().zip(&areas) {
            let series: Vec<(&str, Vec<(f64, f64)>)> =
                names.iter().map(|n| (*n, points(history, n))).collect();
            // A little room either side so the end markers are not clipped.
            let first = history.epochs.iter().min().copied().unwrap_or(0) as f64;
            let last = history.epochs.iter().max().copied().unwrap_or(0) as f64;
            let pad = ((last - first) * 0.03).max(0.1);
            let (x0, x1) = if last > first {
                (first - pad, last + pad)
            } else {
                (first - 0.5, first + 0.5)
            };
            // At most one label per epoch, so no ticks fall between epochs.
            let x_labels = ((x1 - x0).floor() as usize + 1).clamp(1, 12);
            let (y0, y1) = range(
                series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y)),
                0.05,
            );
            let mut builder = ChartBuilder::on(area);
            builder.margin(16);
            if text {
                builder
                    .caption(*title, (FAMILY, 24))
                    .x_label_area_size(44)
                    .y_label_area_size(64);
            }
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            let mut mesh = chart.configure_mesh();
            mesh.x_labels(x_labels).y_labels(10).max_light_lines(2);
            if text {
                mesh.x_desc("epoch")
                    .y_desc(*title)
                    .x_label_formatter(&epoch_label)
                    .y_label_formatter(&value_label)
                    .label_style((FAMILY, 14))
                    .axis_desc_style((FAMILY, 16));
            } else {
                mesh.disable_x_axis().disable_y_axis();
            }
            mesh.draw()?;
            if !text {
                chart
                    .plotting_area()
                    .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))?;
            }
            let mut train_i = 0;
            let mut val_i = 0;
            for (name, pts) in &series {
                let validation = name.starts_with("val_");
                let c = if validation {
                    val_i += 1;
                    color(val_i - 1, true)
                } else {
                    train_i += 1;
                    color(train_i - 1, false)
                };
                let style = c.stroke_width(2);
                let drawn = chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
                if text {
                    let label = name.to_string();
                    drawn.label(label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                    });
                }
                // Markers show single epochs; past a few dozen they only clutter the curve.
                if pts.len() <= 60 {
                    chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))?;
                }
            }
            if text && !series.is_empty() {
                chart
                    .configure_series_labels()
                    .position(if *title == "loss" {
                        SeriesLabelPosition::UpperRight
                    } else {
                        SeriesLabelPosition::LowerRight
                    })
                    .label_font((FAMILY, 14))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.5))
                    .draw()?;
            }
        }
        root.present()?;
        Ok(())
    }
}
