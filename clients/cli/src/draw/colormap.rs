//! Colormaps for `inferctl depth --colormap`: each a few anchor colours of
//! the perceptually uniform maps people know from matplotlib (sampled at
//! nine evenly spaced points), interpolated linearly into 256 levels.

/// A colormap by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Colormap {
    /// Black through purple and orange to pale yellow.
    Magma,
    /// Black through purple and red to yellow.
    Inferno,
    /// Dark blue through teal to yellow.
    Viridis,
    /// Greyscale, as pipeline()'s `depth` picture.
    Grey,
}

impl Colormap {
    /// The anchors, evenly spaced from level 0 to 255.
    fn anchors(self) -> &'static [[u8; 3]] {
        match self {
            Colormap::Magma => &[
                [0, 0, 4],
                [28, 16, 68],
                [79, 18, 123],
                [129, 37, 129],
                [181, 54, 122],
                [229, 80, 100],
                [251, 135, 97],
                [254, 194, 135],
                [252, 253, 191],
            ],
            Colormap::Inferno => &[
                [0, 0, 4],
                [31, 12, 72],
                [85, 15, 109],
                [136, 34, 106],
                [186, 54, 85],
                [227, 89, 51],
                [249, 140, 10],
                [249, 201, 50],
                [252, 255, 164],
            ],
            Colormap::Viridis => &[
                [68, 1, 84],
                [72, 40, 120],
                [62, 73, 137],
                [49, 104, 142],
                [38, 130, 142],
                [31, 158, 137],
                [53, 183, 121],
                [110, 206, 88],
                [253, 231, 37],
            ],
            Colormap::Grey => &[[0, 0, 0], [255, 255, 255]],
        }
    }

    /// The colour of each of the 256 levels.
    pub fn table(self) -> Vec<[u8; 3]> {
        let anchors = self.anchors();
        let spans = (anchors.len() - 1) as f64;
        (0..256)
            .map(|level| {
                let at = level as f64 / 255.0 * spans;
                let i = (at.floor() as usize).min(anchors.len() - 2);
                let t = at - i as f64;
                let (a, b) = (anchors[i], anchors[i + 1]);
                [0, 1, 2].map(|c| (a[c] as f64 + (b[c] as f64 - a[c] as f64) * t).round() as u8)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_run_from_the_first_anchor_to_the_last() {
        for map in [Colormap::Magma, Colormap::Inferno, Colormap::Viridis, Colormap::Grey] {
            let table = map.table();
            assert_eq!(table.len(), 256);
            assert_eq!(table[0], map.anchors()[0]);
            assert_eq!(table[255], *map.anchors().last().unwrap());
        }
        assert_eq!(Colormap::Grey.table()[128], [128, 128, 128]);
    }
}
