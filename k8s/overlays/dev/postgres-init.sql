-- One database and one role per service: no service can read another's tables.
CREATE ROLE patient LOGIN PASSWORD 'patient';
CREATE DATABASE patient OWNER patient;
CREATE ROLE doctor LOGIN PASSWORD 'doctor';
CREATE DATABASE doctor OWNER doctor;
CREATE ROLE appointment LOGIN PASSWORD 'appointment';
CREATE DATABASE appointment OWNER appointment;
CREATE ROLE prescription LOGIN PASSWORD 'prescription';
CREATE DATABASE prescription OWNER prescription;
CREATE ROLE notification LOGIN PASSWORD 'notification';
CREATE DATABASE notification OWNER notification;
CREATE ROLE billing LOGIN PASSWORD 'billing';
CREATE DATABASE billing OWNER billing;
CREATE ROLE payment LOGIN PASSWORD 'payment';
CREATE DATABASE payment OWNER payment;
