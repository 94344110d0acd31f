-- Demo data for docker/compose.yaml. All people, SSNs and card numbers are made
-- up (SSNs use the never-issued 9xx area; cards are well-known test numbers).
--
-- The postgres image runs this via psql against POSTGRES_DB, and compose sets
-- POSTGRES_DB=demo, so the entrypoint has already done CREATE DATABASE demo and
-- we are connected to it. The app_rw password comes from the environment
-- (DEMO_DB_PASSWORD, the same variable pgmoat reads) via psql's \getenv.

\set ON_ERROR_STOP on
\getenv app_rw_password DEMO_DB_PASSWORD
CREATE ROLE app_rw LOGIN PASSWORD :'app_rw_password';

CREATE TABLE public.users (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL UNIQUE,
    ssn         text NOT NULL,
    card_number text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.users (id, name, email, ssn, card_number, created_at) VALUES
    (1,  'Alice Carver',    'alice.carver@example.com',    '900-12-3401', '4111111111111111', '2024-01-03 09:12:00+00'),
    (2,  'Bruno Diaz',      'bruno.diaz@example.com',      '900-12-3402', '5555555555554444', '2024-01-05 14:30:00+00'),
    (3,  'Chen Wei',        'chen.wei@example.org',        '900-12-3403', '378282246310005',  '2024-01-09 08:01:00+00'),
    (4,  'Dana Okafor',     'dana.okafor@example.net',     '900-12-3404', '6011111111111117', '2024-01-11 17:45:00+00'),
    (5,  'Elif Yilmaz',     'elif.yilmaz@example.com',     '900-12-3405', '4012888888881881', '2024-01-15 11:20:00+00'),
    (6,  'Farid Haddad',    'farid.haddad@example.org',    '900-12-3406', '5105105105105100', '2024-01-19 10:05:00+00'),
    (7,  'Greta Lind',      'greta.lind@example.com',      '900-12-3407', NULL,               '2024-01-22 16:40:00+00'),
    (8,  'Hiro Tanaka',     'hiro.tanaka@example.net',     '900-12-3408', '4111111111111111', '2024-02-01 07:55:00+00'),
    (9,  'Isla Moreau',     'isla.moreau@example.com',     '900-12-3409', '371449635398431',  '2024-02-04 13:10:00+00'),
    (10, 'Jonas Berg',      'jonas.berg@example.org',      '900-12-3410', '5555555555554444', '2024-02-08 19:25:00+00'),
    (11, 'Kemi Adeyemi',    'kemi.adeyemi@example.com',    '900-12-3411', '6011000990139424', '2024-02-12 09:00:00+00'),
    (12, 'Luca Rossi',      'luca.rossi@example.net',      '900-12-3412', '4012888888881881', '2024-02-17 12:35:00+00'),
    (13, 'Maya Patel',      'maya.patel@example.com',      '900-12-3413', NULL,               '2024-02-21 15:50:00+00'),
    (14, 'Nils Johansson',  'nils.johansson@example.org',  '900-12-3414', '5105105105105100', '2024-03-02 08:15:00+00'),
    (15, 'Olga Petrova',    'olga.petrova@example.com',    '900-12-3415', '4111111111111111', '2024-03-06 10:45:00+00'),
    (16, 'Pablo Ortega',    'pablo.ortega@example.net',    '900-12-3416', '378282246310005',  '2024-03-10 18:05:00+00'),
    (17, 'Quinn Murphy',    'quinn.murphy@example.com',    '900-12-3417', '5555555555554444', '2024-03-14 11:30:00+00'),
    (18, 'Rosa Silva',      'rosa.silva@example.org',      '900-12-3418', '6011111111111117', '2024-03-19 14:20:00+00'),
    (19, 'Sami Virtanen',   'sami.virtanen@example.com',   '900-12-3419', '4012888888881881', '2024-03-23 09:40:00+00'),
    (20, 'Tara Nguyen',     'tara.nguyen@example.net',     '900-12-3420', NULL,               '2024-03-28 16:55:00+00');

CREATE TABLE public.orders (
    id         integer PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES public.users (id),
    item       text NOT NULL,
    amount     numeric(10, 2) NOT NULL,
    status     text NOT NULL DEFAULT 'paid',
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.orders (id, user_id, item, amount, status, created_at) VALUES
    (1,  1,  'Keyboard',        49.90,  'paid',     '2024-02-01 10:00:00+00'),
    (2,  2,  'Monitor',         189.00, 'shipped',  '2024-02-02 11:00:00+00'),
    (3,  3,  'USB cable',       7.50,   'paid',     '2024-02-03 12:00:00+00'),
    (4,  1,  'Mouse',           24.99,  'refunded', '2024-02-04 13:00:00+00'),
    (5,  5,  'Laptop stand',    39.00,  'shipped',  '2024-02-05 14:00:00+00'),
    (6,  8,  'Headphones',      99.00,  'paid',     '2024-02-06 15:00:00+00'),
    (7,  10, 'Webcam',          59.90,  'paid',     '2024-02-07 16:00:00+00'),
    (8,  12, 'Desk lamp',       29.00,  'shipped',  '2024-02-08 17:00:00+00'),
    (9,  15, 'Notebook',        3.20,   'paid',     '2024-02-09 18:00:00+00'),
    (10, 17, 'Chair',           249.00, 'pending',  '2024-02-10 19:00:00+00'),
    (11, 19, 'Docking station', 159.00, 'paid',     '2024-02-11 20:00:00+00'),
    (12, 20, 'SSD 1TB',         79.00,  'shipped',  '2024-02-12 21:00:00+00');

CREATE SCHEMA hr;

CREATE TABLE hr.salaries (
    user_id        integer PRIMARY KEY REFERENCES public.users (id),
    title          text NOT NULL,
    annual_salary  numeric(12, 2) NOT NULL,
    bank_account   text NOT NULL,
    effective_from date NOT NULL
);

INSERT INTO hr.salaries (user_id, title, annual_salary, bank_account, effective_from) VALUES
    (1,  'Engineer',         98000.00,  'DE00 0000 0000 0000 0001 01', '2023-01-01'),
    (2,  'Designer',         82000.00,  'DE00 0000 0000 0000 0002 02', '2023-03-01'),
    (3,  'Engineer',         105000.00, 'DE00 0000 0000 0000 0003 03', '2022-07-01'),
    (4,  'Support lead',     71000.00,  'DE00 0000 0000 0000 0004 04', '2023-05-15'),
    (5,  'Product manager',  112000.00, 'DE00 0000 0000 0000 0005 05', '2021-11-01'),
    (6,  'Data analyst',     88000.00,  'DE00 0000 0000 0000 0006 06', '2024-01-01'),
    (7,  'Recruiter',        64000.00,  'DE00 0000 0000 0000 0007 07', '2023-09-01'),
    (8,  'SRE',              118000.00, 'DE00 0000 0000 0000 0008 08', '2022-02-01');

GRANT USAGE ON SCHEMA public, hr TO app_rw;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, hr TO app_rw;
