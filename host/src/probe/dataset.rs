//! Labelled datasets for probing: a folder per class, a CSV manifest, or image and mask pairs;
//! grouped by patient or subject so that splits never put one subject on both sides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::heads::Task;

/// What an item is labelled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One class index.
    Class(usize),
    /// A flag per class (multi-label).
    Labels(Vec<bool>),
    /// A mask image (PNG; 0/255 for two classes, or class indices).
    Mask(PathBuf),
}

/// One labelled image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The image file.
    pub path: PathBuf,
    /// Its label.
    pub target: Target,
    /// Its subject or patient group.
    pub group: String,
}

/// A dataset ready for feature extraction.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Classification or segmentation.
    pub task: Task,
    /// Class names, in index order.
    pub classes: Vec<String>,
    /// Labels are sets of classes (multi-label classification).
    pub multi_label: bool,
    /// Items in a stable order (sorted by path).
    pub items: Vec<Item>,
}

/// Where a dataset comes from.
#[derive(Clone, Debug, Default)]
pub struct DatasetSource {
    /// Folders (a folder per class, or images for segmentation) or CSV manifests.
    pub data: Vec<PathBuf>,
    /// Mask folders for segmentation, paired with `data` in order; masks match images by stem.
    pub masks: Vec<PathBuf>,
    /// For segmentation with masks beside the images: the mask of `X.png` is `X<suffix>.png`.
    pub mask_suffix: Option<String>,
    /// Segmentation class names (index 0 is background); default background, foreground.
    pub classes: Option<Vec<String>>,
    /// Groups from file names: the first capture group (or the whole match) of this pattern;
    /// by default each file is its own group.
    pub group_by: Option<String>,
}

/// Why a dataset could not be assembled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    /// A folder or file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Nothing to learn from.
    #[error("dataset {0} holds no labelled images")]
    Empty(String),
    /// A class has no example.
    #[error("class {class:?} has no images in {source_path}")]
    EmptyClass {
        /// The class.
        class: String,
        /// Where.
        source_path: PathBuf,
    },
    /// A CSV row or a file name does not fit the expected layout.
    #[error("{path}: {reason}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A bad `--group-by` pattern.
    #[error("--group-by {pattern:?}: {reason}")]
    GroupPattern {
        /// The pattern.
        pattern: String,
        /// The parser's message.
        reason: String,
    },
}

/// Files taken as images; a `.dcm` is a DICOM image or cine (a volume of slices).
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DatasetError::Read {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DatasetError::Read {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Builds the grouping function from the pattern.
fn grouper(pattern: &Option<String>) -> Result<impl Fn(&Path) -> String, DatasetError> {
    let re = pattern
        .as_ref()
        .map(|p| {
            Regex::new(p).map_err(|e| DatasetError::GroupPattern {
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    Ok(move |path: &Path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &re {
            Some(re) => re
                .captures(&name)
                .and_then(|c| c.get(1).or_else(|| c.get(0)))
                .map_or_else(|| name.clone(), |m| m.as_str().to_string()),
            None => path.display().to_string(),
        }
    })
}

impl Dataset {
    /// Reads the dataset's layout (not the images themselves).
    pub fn open(task: Task, source: &DatasetSource) -> Result<Dataset, DatasetError> {
        let group = grouper(&source.group_by)?;
        let label = source
            .data
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut ds = match task {
            Task::Classify => Self::open_classify(source, &group)?,
            Task::Segment => Self::open_segment(source, &group)?,
        };
        if ds.items.is_empty() {
            return Err(DatasetError::Empty(label));
        }
        ds.items.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ds)
    }

    fn open_classify(
        source: &DatasetSource,
        group: &impl Fn(&Path) -> String,
    ) -> Result<Dataset, DatasetError> {
        let mut classes: Vec<String> = Vec::new();
        let mut items = Vec::new();
        let mut multi_label = false;
        for root in &source.data {
            if root
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                multi_label |= read_manifest(root, &mut classes, &mut items, group)?;
                continue;
            }
            for dir in read_dir_sorted(root)?.into_iter().filter(|p| p.is_dir()) {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let class = match classes.iter().position(|c| *c == name) {
                    Some(i) => i,
                    None => {
                        classes.push(name.clone());
                        classes.len() - 1
                    }
                };
                let images: Vec<PathBuf> = read_dir_sorted(&dir)?
                    .into_iter()
                    .filter(|p| is_image(p))
                    .collect();
                if images.is_empty() {
                    return Err(DatasetError::EmptyClass {
                        class: name,
                        source_path: dir,
                    });
                }
                items.extend(images.into_iter().map(|path| Item {
                    group: group(&path),
                    target: Target::Class(class),
                    path,
                }));
            }
        }
        if multi_label {
            // Every item gets a flag per class, including classes another source added later.
            let k = classes.len();
            for item in &mut items {
                match &mut item.target {
                    Target::Class(c) => {
                        let c = *c;
                        item.target = Target::Labels((0..k).map(|i| i == c).collect());
                    }
                    Target::Labels(v) => v.resize(k, false),
                    Target::Mask(_) => {}
                }
            }
        }
        Ok(Dataset {
            task: Task::Classify,
            classes,
            multi_label,
            items,
        })
    }

    fn open_segment(
        source: &DatasetSource,
        group: &impl Fn(&Path) -> String,
    ) -> Result<Dataset, DatasetError> {
        let classes = source
            .classes
            .clone()
            .unwrap_or_else(|| vec!["background".into(), "foreground".into()]);
        let mut items = Vec::new();
        for (i, root) in source.data.iter().enumerate() {
            let files: Vec<PathBuf> = read_dir_sorted(root)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            match (&source.mask_suffix, source.masks.get(i)) {
                (_, Some(mask_dir)) => {
                    let masks: BTreeMap<String, PathBuf> = read_dir_sorted(mask_dir)?
                        .into_iter()
                        .filter(|p| is_image(p))
                        .map(|p| (stem(&p), p))
                        .collect();
                    for path in files {
                        let mask = masks
                            .get(&stem(&path))
                            .ok_or_else(|| DatasetError::Layout {
                                path: path.clone(),
                                reason: format!("no mask with this name in {}", mask_dir.display()),
                            })?;
                        items.push(Item {
                            group: group(&path),
                            target: Target::Mask(mask.clone()),
                            path,
                        });
                    }
                }
                (Some(suffix), None) => {
                    let names: BTreeMap<String, PathBuf> =
                        files.iter().map(|p| (stem(p), p.clone())).collect();
                    for (s, path) in &names {
                        if s.ends_with(suffix.as_str()) {
                            continue;
                        }
                        let mask = names.get(&format!("{s}{suffix}")).ok_or_else(|| {
                            DatasetError::Layout {
                                path: path.clone(),
                                reason: format!("no mask {s}{suffix}.* beside it"),
                            }
                        })?;
                        items.push(Item {
                            group: group(path),
                            target: Target::Mask(mask.clone()),
                            path: path.clone(),
                        });
                    }
                }
                (None, None) => {
                    return Err(DatasetError::Layout {
                        path: root.clone(),
                        reason: "segmentation needs --masks DIR (paired by name) or --mask-suffix SUFFIX".into(),
                    });
                }
            }
        }
        Ok(Dataset {
            task: Task::Segment,
            classes,
            multi_label: false,
            items,
        })
    }

    /// Splits item indices into (kept, held out) by group: a group goes wholly to one side,
    /// chosen by a hash of the seed and the group name, so the split does not depend on order
    /// and is the same for `probe fit` and `probe eval` given the same seed.
    pub fn split(&self, held_out_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let (mut kept, mut held) = (Vec::new(), Vec::new());
        for (i, item) in self.items.iter().enumerate() {
            let mut h = crc32fast::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(item.group.as_bytes());
            let u = f64::from(h.finalize()) / f64::from(u32::MAX);
            if u < held_out_fraction {
                held.push(i)
            } else {
                kept.push(i)
            }
        }
        (kept, held)
    }

    /// Drops duplicate images: the same picture whatever its file name, encoding, size or
    /// small edits, judged by a 64-bit difference hash (grey 9x8 thumbnail, one bit per
    /// horizontal gradient) within `max_distance` bits of an earlier image's. A duplicate with
    /// the same label is dropped; pictures that carry different labels are dropped in every copy,
    /// as no label can be trusted. Returns (dropped duplicates, dropped conflicting images).
    /// Unreadable images are kept, for extraction to report.
    pub fn dedupe(&mut self, max_distance: u32) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut seen: Vec<(u64, usize)> = Vec::new();
        let mut conflicting = std::collections::BTreeSet::new();
        let mut drop = std::collections::BTreeSet::new();
        for (i, item) in self.items.iter().enumerate() {
            let Ok(img) = image::open(&item.path) else {
                continue;
            };
            let hash = difference_hash(&img);
            match seen
                .iter()
                .find(|(h, _)| (h ^ hash).count_ones() <= max_distance)
            {
                None => seen.push((hash, i)),
                Some(&(_, j)) if self.items.get(j).map(|it| &it.target) == Some(&item.target) => {
                    drop.insert(i);
                }
                Some(&(_, j)) => {
                    conflicting.insert(i);
                    conflicting.insert(j);
                }
            }
        }
        let mut dup_paths = Vec::new();
        let mut conflict_paths = Vec::new();
        let mut kept = Vec::new();
        for (i, item) in std::mem::take(&mut self.items).into_iter().enumerate() {
            if conflicting.contains(&i) {
                conflict_paths.push(item.path);
            } else if drop.contains(&i) {
                dup_paths.push(item.path);
            } else {
                kept.push(item);
            }
        }
        self.items = kept;
        (dup_paths, conflict_paths)
    }

    /// Single-label class of each item (for classification), `None` for other targets.
    pub fn class_of(&self, i: usize) -> Option<usize> {
        match self.items.get(i).map(|it| &it.target) {
            Some(Target::Class(c)) => Some(*c),
            _ => None,
        }
    }
}

/// The 64-bit difference hash of an image: a 9x8 grey thumbnail, bit set where a pixel is
/// darker than its right neighbour.
pub fn difference_hash(img: &image::DynamicImage) -> u64 {
    let small =
        image::imageops::resize(&img.to_luma8(), 9, 8, image::imageops::FilterType::Triangle);
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let (a, b) = (small.get_pixel(x, y).0[0], small.get_pixel(x + 1, y).0[0]);
            h = (h << 1) | u64::from(a < b);
        }
    }
    h
}

/// Reads a `path,label[,group]` CSV (header required; labels separated by `;` make it
/// multi-label). Returns whether any row had several labels.
fn read_manifest(
    csv: &Path,
    classes: &mut Vec<String>,
    items: &mut Vec<Item>,
    group: &impl Fn(&Path) -> String,
) -> Result<bool, DatasetError> {
    let text = std::fs::read_to_string(csv).map_err(|e| DatasetError::Read {
        path: csv.to_path_buf(),
        reason: e.to_string(),
    })?;
    let base = csv.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .map(|(_, h)| {
            h.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(pc), Some(lc)) = (col("path"), col("label")) else {
        return Err(DatasetError::Layout {
            path: csv.to_path_buf(),
            reason: "the header must name the columns path and label (and optionally group)".into(),
        });
    };
    let gc = col("group");
    let mut multi = false;
    let mut rows = Vec::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(p), Some(l)) = (cells.get(pc), cells.get(lc)) else {
            return Err(DatasetError::Layout {
                path: csv.to_path_buf(),
                reason: format!("line {}: fewer columns than the header", n + 1),
            });
        };
        let labels: Vec<usize> = l
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|name| match classes.iter().position(|c| c == name) {
                Some(i) => i,
                None => {
                    classes.push(name.to_string());
                    classes.len() - 1
                }
            })
            .collect();
        if labels.is_empty() {
            return Err(DatasetError::Layout {
                path: csv.to_path_buf(),
                reason: format!("line {}: no label", n + 1),
            });
        }
        multi |= labels.len() > 1;
        let path = base.join(p);
        let g = gc
            .and_then(|g| cells.get(g))
            .map_or_else(|| group(&path), |g| g.to_string());
        rows.push((path, labels, g));
    }
    let k = classes.len();
    for (path, labels, g) in rows {
        let target = match labels.as_slice() {
            [one] if !multi => Target::Class(*one),
            _ => Target::Labels((0..k).map(|c| labels.contains(&c)).collect()),
        };
        items.push(Item {
            path,
            target,
            group: g,
        });
    }
    Ok(multi)
}
