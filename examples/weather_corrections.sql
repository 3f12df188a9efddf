-- A day's corrections to the weather table, Databricks SQL style: MERGE, UPDATE, DELETE, a view,
-- OPTIMIZE and VACUUM, over the sample data (`make sample && stratus ingest ...`).
--
-- Run it with `stratus sql --file examples/weather_corrections.sql` (or statement by statement
-- through POST /api/v1/sql) as a principal with MODIFY on main.weather.hourly and CREATE TABLE
-- on main.demo. It can be run again: it drops what it created first (the weather rows it
-- changes stay changed; `RESTORE TABLE main.weather.hourly TO VERSION AS OF n` undoes them,
-- with n from `DESCRIBE HISTORY main.weather.hourly`).
-- Every statement is one Delta commit; `DESCRIBE HISTORY` names them (MERGE, UPDATE, ...).

CREATE SCHEMA IF NOT EXISTS main.demo COMMENT 'Stratus demonstrations';

DROP VIEW IF EXISTS main.demo.station_corrections;
DROP TABLE IF EXISTS main.demo.corrections;

-- what the observers sent in: who reported it is PII (encrypted at rest, masked for readers
-- without UNMASK)
CREATE TABLE main.demo.corrections (
  city_id STRING NOT NULL,
  ts TIMESTAMP_NTZ NOT NULL COMMENT 'local standard time, as in main.weather.hourly',
  temp DOUBLE COMMENT 'corrected temperature (°C); NULL: the reading was bad, drop the hour',
  humidity DOUBLE,
  description STRING,
  reported_by STRING COMMENT 'e-mail of the observer'
)
COMMENT 'Corrections to hourly observations, one row per hour';

ALTER TABLE main.demo.corrections ALTER COLUMN reported_by SET TAGS ('pii' = 'email');

INSERT INTO main.demo.corrections VALUES
  ('greensboro', TIMESTAMP_NTZ'1980-04-01 01:00:00', 8.4, 70, 'few clouds', 'ana.lima@example.net'),
  ('greensboro', TIMESTAMP_NTZ'1980-04-01 02:00:00', NULL, NULL, NULL, 'ana.lima@example.net'),
  ('greensboro', TIMESTAMP_NTZ'1980-03-31 23:30:00', 8.1, 69, 'clear sky', 'john.roe@example.org');

-- the corrections into the weather table: update the hours they correct, delete the bad
-- reading, insert the hour that was missing
MERGE INTO main.weather.hourly AS h
USING main.demo.corrections AS c
ON h.city_id = c.city_id AND h.ts = c.ts
WHEN MATCHED AND c.temp IS NULL THEN DELETE
WHEN MATCHED THEN UPDATE SET temp = c.temp, humidity = c.humidity, description = c.description
WHEN NOT MATCHED AND c.temp IS NOT NULL THEN
  INSERT (city_id, date, hour, ts, temp, humidity, description)
  VALUES (c.city_id, CAST(c.ts AS DATE), date_format(c.ts, 'HHmm'), c.ts, c.temp, c.humidity,
          c.description);

-- Miami's thermometer read 0.5 °C low on 2 February 1961
UPDATE main.weather.hourly SET temp = temp + 0.5
WHERE city_id = 'miami' AND date = DATE'1961-02-02';

-- Sand Point's records of 2 July 1991 were lost to a sensor fault
DELETE FROM main.weather.hourly WHERE city_id = 'sand-point' AND date = DATE'1991-07-02';

-- what each correction changed, for the stations' reviewers (they get SELECT on the view only)
CREATE OR REPLACE VIEW main.demo.station_corrections
COMMENT 'Corrections with the value now in the weather table'
AS SELECT c.city_id, c.ts, c.temp AS corrected_temp, h.temp AS current_temp, c.reported_by
FROM main.demo.corrections c
LEFT JOIN main.weather.hourly h ON h.city_id = c.city_id AND h.ts = c.ts;

-- small files from the commits above, compacted (and clustered by time within each city)
OPTIMIZE main.weather.hourly ZORDER BY (ts);

-- files no version of the last 7 days needs (none yet: they were replaced minutes ago)
VACUUM main.weather.hourly;
