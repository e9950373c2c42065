//! mirror::progress: what a mirror run tells about itself while it runs, through an [`Observer`] its caller passes in.
//!
//! As with [`crate::copy::progress`], the run never draws: `report::MirrorProgress` implements
//! [`Observer`] with bars on a terminal, and [`Quiet`] tells no one.

use super::ImageResult;

/// Watches a mirror run image by image. Every method does nothing unless implemented.
pub trait Observer: Send + Sync {
    /// `n` more images are to be done, at every target.
    fn add_images(&self, n: usize) {
        let _ = n;
    }

    /// One image is done at every target, with these results.
    fn image_done(&self, result: &ImageResult) {
        let _ = result;
    }
}

/// Tells no one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}
