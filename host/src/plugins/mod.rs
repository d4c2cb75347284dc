//! Plugins: finding files (`discover`), loading them under the version policy
//! (`load`), calling them safely (`handle`), resolving dependencies (`deps`),
//! the registry (`registry`) and the lifecycle (`lifecycle`).

pub mod deps;
pub mod discover;
pub mod handle;
pub mod lifecycle;
pub mod load;
pub mod registry;
