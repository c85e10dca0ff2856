//! Integration tests: each test runs the real application on its own port
//! against its own freshly migrated database (TEST_DATABASE_URL), with
//! Open-Meteo faked by wiremock.

mod aggregates;
mod api;
mod caching;
mod degradation;
mod helpers;
mod operations;
mod page;
