// Package cluster holds the multi-node tests: several Parley nodes on one
// PostgreSQL database and a Redis or NATS bus, behind a real nginx, with
// nodes killed and buses stopped in the middle of a load. They need those
// services on 127.0.0.1 and skip without them (fail under CI=true); see
// package testenv. There is no code here, only the tests.
package cluster
