//! The entity flows, one file per family: what follows from an event that has just been emitted
//! (`react_*`, dispatched by `Marketplace::react` on the stream's role) and the scheduled
//! happenings each family owns (`on_*`, dispatched by `Model::handle`).

mod booking;
mod lesson;
mod marketing;
mod payment;
mod platform;
mod search;
mod supply;
mod support;
