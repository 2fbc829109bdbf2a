# emotion_ros: one-command setup, demo, tests and benchmarks in a local venv (no ROS distribution needed).
# `make setup` is idempotent: each step re-runs only when its inputs changed.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BUILD  := .build
# Every process started from here stays on this machine: shared-memory-only DDS, localhost discovery,
# a domain of its own (override ROS_DOMAIN_ID to share a domain with other local tools).
ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 90 + 10 )))
LOCAL_ROS := FASTDDS_DEFAULT_PROFILES_FILE=$(CURDIR)/config/fastdds_shm_only.xml \
             ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=$(ROS_DOMAIN_ID)

MSG_SOURCES := $(wildcard emotion_msgs/msg/*.msg emotion_msgs/srv/*.srv) emotion_msgs/CMakeLists.txt emotion_msgs/package.xml

.PHONY: setup demo test test-fast bench clean
setup: $(VENV)/.pkg.stamp

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.deps.stamp: requirements.txt constraints.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	touch $@

# emotion_msgs is built with rosidl + plain CMake against the ros-* wheels and installed into the venv prefix,
# so `import emotion_msgs.msg` works with nothing sourced (the wheels' bootstrapper adds $(VENV)/lib).
$(VENV)/.msgs.stamp: $(MSG_SOURCES) cmake/fix_wheel_paths.cmake $(VENV)/.deps.stamp
	rm -rf $(BUILD)/emotion_msgs && mkdir -p $(BUILD)
	. $(VENV)/bin/activate && AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) cmake -S emotion_msgs -B $(BUILD)/emotion_msgs \
	  -DCMAKE_INSTALL_PREFIX=$(CURDIR)/$(VENV) -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(CURDIR)/$(PY) \
	  -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/cmake/fix_wheel_paths.cmake > $(BUILD)/cmake.log 2>&1 || \
	  (cat $(BUILD)/cmake.log; exit 1)
	cmake --build $(BUILD)/emotion_msgs -j2 > $(BUILD)/build.log 2>&1 || (tail -50 $(BUILD)/build.log; exit 1)
	cmake --install $(BUILD)/emotion_msgs > /dev/null
	$(PY) -c "import emotion_msgs.msg, emotion_msgs.srv"
	touch $@

$(VENV)/.pkg.stamp: setup.py setup.cfg $(VENV)/.msgs.stamp
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import rclpy, emotion_msgs.msg, emotion_ros"
	touch $@

demo: setup
	$(LOCAL_ROS) $(VENV)/bin/emotion-live --source demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest ran no tests: counted as a failure"; exit $$rc; }

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(LOCAL_ROS) $(PY) bench/run_all.py

clean:
	rm -rf $(BUILD) $(VENV)
