-- The seed's five columns come first and keep their names and meaning, so the
-- seed's own `SELECT * FROM mediciones ORDER BY id DESC LIMIT 15` and its JSON
-- backups keep working. All times are UTC.
CREATE TABLE IF NOT EXISTS mediciones (
    id                   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    ciudad               VARCHAR(64)      NOT NULL,
    -- NULL when the source had no value: a missing value is never invented.
    temperatura          DOUBLE           NULL,
    humedad              TINYINT UNSIGNED NULL,
    -- The sensor's tick: one row per city per tick, aligned to the cadence.
    fecha_registro       DATETIME         NOT NULL,
    -- Where the reading came from: 'open-meteo' or 'simulated'.
    source               VARCHAR(16)      NOT NULL,
    -- Observation time reported by the API (`current.time`), in UTC.
    observed_at          DATETIME         NULL,
    apparent_temperature DOUBLE           NULL,
    weather_code         SMALLINT UNSIGNED NULL,
    wind_speed           DOUBLE           NULL,
    PRIMARY KEY (id),
    -- A retried or replayed insert of the same tick is a no-op (INSERT IGNORE),
    -- and the same index serves per-city time-range queries.
    UNIQUE KEY uq_mediciones_city_tick (ciudad, fecha_registro),
    KEY ix_mediciones_fecha (fecha_registro)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
