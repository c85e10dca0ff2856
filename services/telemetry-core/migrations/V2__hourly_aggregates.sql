-- Hourly aggregates per city, so that week-, month- and year-long charts
-- read at most a few thousand rows instead of scanning mediciones.
-- `hour` is the UTC hour a reading's tick falls in (fecha_registro truncated).
-- Means are sum / count over the non-NULL values: temperatura and humedad
-- may be NULL, so each has its own count.
CREATE TABLE IF NOT EXISTS mediciones_hourly (
    ciudad            VARCHAR(64)      NOT NULL,
    hour              DATETIME         NOT NULL,
    readings          INT UNSIGNED     NOT NULL,
    temperature_count INT UNSIGNED     NOT NULL,
    temperature_sum   DOUBLE           NOT NULL,
    temperature_min   DOUBLE           NULL,
    temperature_max   DOUBLE           NULL,
    humidity_count    INT UNSIGNED     NOT NULL,
    humidity_sum      BIGINT UNSIGNED  NOT NULL,
    humidity_min      TINYINT UNSIGNED NULL,
    humidity_max      TINYINT UNSIGNED NULL,
    -- The same collation as mediciones.ciudad, so a city groups here exactly
    -- as the unique key of mediciones groups it.
    PRIMARY KEY (ciudad, hour)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Kept up to date by the database on every insert, whoever inserts (the
-- sensor, a restore, the seed adoption). Readings are append only: no
-- service updates or deletes a row of mediciones, so INSERT is the only
-- event to follow. AFTER INSERT fires only for rows actually inserted, so a
-- replay ignored by INSERT IGNORE is not counted twice. The trigger runs
-- with the rights of its definer (the migrate account), so the sensor needs
-- no right on this table. LEAST/GREATEST return NULL if either side is NULL:
-- the COALESCEs keep the known value when the other one is missing.
CREATE TRIGGER mediciones_hourly_after_insert AFTER INSERT ON mediciones FOR EACH ROW
    INSERT INTO mediciones_hourly
        (ciudad, hour, readings, temperature_count, temperature_sum, temperature_min,
         temperature_max, humidity_count, humidity_sum, humidity_min, humidity_max)
    VALUES (
        NEW.ciudad,
        CAST(DATE_FORMAT(NEW.fecha_registro, '%Y-%m-%d %H:00:00') AS DATETIME),
        1,
        NEW.temperatura IS NOT NULL,
        COALESCE(NEW.temperatura, 0),
        NEW.temperatura,
        NEW.temperatura,
        NEW.humedad IS NOT NULL,
        COALESCE(NEW.humedad, 0),
        NEW.humedad,
        NEW.humedad
    )
    ON DUPLICATE KEY UPDATE
        readings = readings + 1,
        temperature_count = temperature_count + (NEW.temperatura IS NOT NULL),
        temperature_sum = temperature_sum + COALESCE(NEW.temperatura, 0),
        temperature_min = LEAST(COALESCE(temperature_min, NEW.temperatura),
                                COALESCE(NEW.temperatura, temperature_min)),
        temperature_max = GREATEST(COALESCE(temperature_max, NEW.temperatura),
                                   COALESCE(NEW.temperatura, temperature_max)),
        humidity_count = humidity_count + (NEW.humedad IS NOT NULL),
        humidity_sum = humidity_sum + COALESCE(NEW.humedad, 0),
        humidity_min = LEAST(COALESCE(humidity_min, NEW.humedad),
                             COALESCE(NEW.humedad, humidity_min)),
        humidity_max = GREATEST(COALESCE(humidity_max, NEW.humedad),
                                COALESCE(NEW.humedad, humidity_max));

-- The rows that existed before the trigger. Run after it, so a reading
-- inserted meanwhile is not missed; such a reading may also have been
-- counted by the trigger, so each hour is set to the full count rather than
-- added to. INSERT ... SELECT reads mediciones with shared locks (REPEATABLE
-- READ), so an insert cannot slip between this read and its commit.
INSERT INTO mediciones_hourly
    (ciudad, hour, readings, temperature_count, temperature_sum, temperature_min,
     temperature_max, humidity_count, humidity_sum, humidity_min, humidity_max)
SELECT
    ciudad,
    CAST(DATE_FORMAT(fecha_registro, '%Y-%m-%d %H:00:00') AS DATETIME) AS hour_start,
    COUNT(*),
    COUNT(temperatura),
    COALESCE(SUM(temperatura), 0),
    MIN(temperatura),
    MAX(temperatura),
    COUNT(humedad),
    COALESCE(SUM(humedad), 0),
    MIN(humedad),
    MAX(humedad)
FROM mediciones
GROUP BY ciudad, hour_start
ON DUPLICATE KEY UPDATE
    readings = VALUES(readings),
    temperature_count = VALUES(temperature_count),
    temperature_sum = VALUES(temperature_sum),
    temperature_min = VALUES(temperature_min),
    temperature_max = VALUES(temperature_max),
    humidity_count = VALUES(humidity_count),
    humidity_sum = VALUES(humidity_sum),
    humidity_min = VALUES(humidity_min),
    humidity_max = VALUES(humidity_max);
