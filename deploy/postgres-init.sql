-- The abdr catalog's database and role (Temporal uses its own databases on this server).
CREATE ROLE abdr LOGIN PASSWORD 'abdr';
CREATE DATABASE abdr OWNER abdr;
