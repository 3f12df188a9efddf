-- Stratus SQL and lineage demonstration: a menu, and dinner derived from it.
--
-- Run it with `stratus sql --file examples/lineage_menu_dinner.sql` (or statement by statement
-- through POST /api/v1/sql). It can be run again: it drops what it created first.
-- The last statement reads menu and menu_tags and writes dinner, so it records table lineage
-- (menu, menu_tags -> dinner) and column lineage (menu.category -> dinner.category,
-- menu.price -> dinner.avg_price, menu.calories -> dinner.max_calories; menu_tags.tag and the
-- dish_id join columns select the rows): GET /api/v1/lineage/tables/main.demo.dinner shows it.

CREATE SCHEMA IF NOT EXISTS main.demo COMMENT 'Stratus demonstrations';

DROP TABLE IF EXISTS main.demo.dinner;
DROP TABLE IF EXISTS main.demo.menu_tags;
DROP TABLE IF EXISTS main.demo.menu;

CREATE TABLE main.demo.menu (
  dish_id INT NOT NULL COMMENT 'dish number',
  name STRING COMMENT 'what the guest orders',
  category STRING COMMENT 'starter, main or dessert',
  price DECIMAL(6, 2) COMMENT 'EUR',
  calories INT COMMENT 'kcal per portion'
)
COMMENT 'Dishes the kitchen cooks'
TBLPROPERTIES ('stratus.key' = 'dish_id');

INSERT INTO main.demo.menu VALUES
  (1, 'Tomato soup', 'starter', 6.50, 180),
  (2, 'Burrata; with peaches', 'starter', 9.00, 320),
  (3, 'Steak frites', 'main', 24.00, 980),
  (4, 'Mushroom risotto', 'main', 17.50, 640),
  (5, 'Grilled sea bass', 'main', 22.00, 520),
  (6, 'Chocolate mousse', 'dessert', 7.00, 450),
  (7, 'Lemon tart', 'dessert', 6.50, 390),
  (8, 'Club sandwich', 'main', 12.50, 710);

-- which service each dish is on (a dish can be on both)
CREATE TABLE main.demo.menu_tags (
  dish_id INT NOT NULL,
  tag STRING NOT NULL COMMENT 'lunch or dinner'
)
COMMENT 'Services a dish is served at';

INSERT INTO main.demo.menu_tags (dish_id, tag) VALUES
  (1, 'lunch'), (1, 'dinner'),
  (2, 'dinner'),
  (3, 'dinner'),
  (4, 'lunch'), (4, 'dinner'),
  (5, 'dinner'),
  (6, 'dinner'),
  (7, 'lunch'),
  (8, 'lunch');

/* Dinner, per category: how many dishes, their average price and the most calories.
   A select, a join and an aggregate over menu. */
CREATE TABLE main.demo.dinner
COMMENT 'The dinner menu by category'
AS
SELECT
  m.category,
  count(*) AS dishes,
  avg(m.price) AS avg_price,
  max(m.calories) AS max_calories
FROM main.demo.menu AS m
JOIN main.demo.menu_tags AS t ON t.dish_id = m.dish_id
WHERE t.tag = 'dinner' AND m.price > 0
GROUP BY m.category;

SELECT * FROM main.demo.dinner ORDER BY category;
