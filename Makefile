# Device heartbeat system. `make run` brings it up locally; `make test` runs every test.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: deps build release run stop test unit-test lint format deploy-check image-check deployment deployment-stop deployment-test chaos cluster-test fuzz bench clean

deps:            ## install the Debian packages (only what is missing)
	scripts/install-deps.sh

build: deps      ## debug build of both executables
	swift build

release: deps    ## release build
	swift build -c release

run: deps        ## Redis, PostgreSQL, Kafka mock, the gateway and a demo device, in the background
	scripts/run-local.sh

stop:            ## stop what `make run` started
	-@for p in heartbeat-ingest heartbeat-monitor; do if [ -f .run/$$p.pid ]; then kill $$(cat .run/$$p.pid) 2>/dev/null; rm -f .run/$$p.pid; fi; done
	scripts/services.sh stop

test: deps       ## unit and integration tests (starts and stops its own services)
	scripts/run-tests.sh

unit-test:       ## unit tests only, no services
	swift test --filter UnitTests

lint:            ## swift format (the toolchain's) in lint mode with the committed .swift-format; fails on any finding
	swift format lint --strict --recursive --parallel Sources Tests Package.swift

deploy-check:    ## validates every file under deploy/ with the tool that consumes it (promtool, amtool, haproxy, kubernetes-validate, docker-compose config, systemd-analyze, …; ~10 s)
	scripts/check-deploy.sh

image-check: deps  ## the runtime image without Docker: static-stdlib release builds (as the Dockerfile's, in .build-static; ~10 min the first time), debootstrap bookworm, only deploy/container/runtime-packages.txt, both executables and one heartbeat in it (root)
	swift build -c release --static-swift-stdlib --scratch-path .build-static --product heartbeat-ingest
	swift build -c release --static-swift-stdlib --scratch-path .build-static --product heartbeat-monitor
	HEARTBEAT_IMAGE_BIN=.build-static/release scripts/check-deploy.sh --rootfs

format:          ## rewrites the sources as `make lint` wants them
	swift format format --in-place --recursive --parallel Sources Tests Package.swift

deployment: build  ## the whole system on loopback under .run/deployment: Redis (AOF), PostgreSQL, Kafka mock, 3 gateways behind haproxy, 2 monitors, Prometheus, Alertmanager; prints what runs where
	python3 scripts/deployment.py start $(DEPLOYMENT_ARGS)

deployment-stop:   ## stops what `make deployment` started
	python3 scripts/deployment.py stop

deployment-test: build  ## that deployment's integration test: loadgen through haproxy, a gateway and the leader SIGKILLed twice each, audit, alerts, every dashboard query (~3.5 min; own run dir and ports)
	python3 scripts/deployment.py test $(DEPLOYMENT_ARGS)

chaos: build     ## loadgen while Redis, PostgreSQL, Kafka and the leader monitor fail in turn, then audits (~3.5 min; own services under .run/chaos)
	python3 scripts/chaos.py

cluster-test: build  ## loadgen on a Redis Cluster (3 primaries + 3 replicas, REDIS_CLUSTER_NODES) while a primary is SIGKILLed and failed over, bucket slots migrate under load and redis-cli reshards, then audits (~4 min; own PostgreSQL, Kafka mock and cluster under .run/cluster-test, ports 5450, 7311-7316)
	python3 scripts/cluster_test.py $(CLUSTER_TEST_ARGS)

fuzz: build      ## schemathesis (pip install schemathesis) on both HTTP APIs from docs/openapi.yaml, all checks (~2.5 min; own services under .run/fuzz)
	python3 scripts/fuzz.py $(FUZZ_ARGS)

clean:
	swift package clean
	rm -rf .run

bench: deps      ## release builds, the stack, wrk against nginx / no-op / heartbeat; writes docs/benchmarks.md
	python3 scripts/bench/bench.py
