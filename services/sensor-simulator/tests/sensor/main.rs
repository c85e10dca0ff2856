//! The real sensor against a real database and a stub Open-Meteo.

mod backfill;
mod fetching;
mod helpers;
mod outage;
mod shutdown;
mod weather_api;
