//! The offline source: plausible readings from each city's climate, a daily
//! temperature cycle peaking mid-afternoon local solar time, and humidity
//! moving against temperature. Stored with source `simulated`, always.

use chrono::{NaiveDateTime, Timelike};
use telemetry_core::weather::City;
use telemetry_core::{NewReading, Source};

/// Half the day's temperature swing, in °C.
const DAILY_AMPLITUDE: f64 = 5.0;

pub fn reading(city: &City, tick: NaiveDateTime) -> NewReading {
    let utc_hours = tick.num_seconds_from_midnight() as f64 / 3600.0;
    let solar_hours = utc_hours + city.longitude / 15.0;
    let phase = (solar_hours - 15.0) / 24.0 * std::f64::consts::TAU;
    let noise = unit_noise(&city.name, tick) - 0.5;
    let temperature = city.mean_temperature + DAILY_AMPLITUDE * phase.cos() + noise;
    let humidity = (city.mean_humidity - 4.0 * (temperature - city.mean_temperature) + 6.0 * noise)
        .clamp(20.0, 100.0);
    NewReading {
        ciudad: city.name.clone(),
        temperatura: Some((temperature * 10.0).round() / 10.0),
        humedad: Some(humidity.round() as u8),
        fecha_registro: tick,
        source: Source::Simulated,
        observed_at: Some(tick),
        apparent_temperature: None,
        weather_code: None,
        wind_speed: None,
    }
}

/// Deterministic noise in [0, 1) from city and tick (FNV-1a), so a replayed
/// tick produces the same reading.
fn unit_noise(city: &str, tick: NaiveDateTime) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in city.bytes().chain(tick.and_utc().timestamp().to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry_core::weather::default_cities;

    fn tick(hour: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
    }

    #[test]
    fn afternoon_is_warmer_than_dawn_and_values_are_plausible() {
        let bogota = &default_cities()[0];
        // 20:00 UTC is 15:00 in Bogotá; 10:00 UTC is 05:00.
        let afternoon = reading(bogota, tick(20));
        let dawn = reading(bogota, tick(10));
        assert!(afternoon.temperatura.unwrap() > dawn.temperatura.unwrap() + 5.0);
        for hour in 0..24 {
            let r = reading(bogota, tick(hour));
            assert!((7.0..=21.0).contains(&r.temperatura.unwrap()), "{r:?}");
            assert!((20..=100).contains(&r.humedad.unwrap()));
            assert_eq!(r.source, Source::Simulated);
        }
    }

    #[test]
    fn humidity_follows_each_citys_climate() {
        let cities = default_cities();
        let mean = |name: &str| {
            let city = cities.iter().find(|city| city.name == name).unwrap();
            (0..24)
                .map(|hour| f64::from(reading(city, tick(hour)).humedad.unwrap()))
                .sum::<f64>()
                / 24.0
        };
        assert!(mean("Cartagena") > mean("Medellín") + 8.0);
    }

    #[test]
    fn same_tick_gives_same_reading() {
        let cali = &default_cities()[2];
        assert_eq!(reading(cali, tick(3)), reading(cali, tick(3)));
    }
}
