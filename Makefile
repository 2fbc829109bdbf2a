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
# REP-155 interfaces source for `make hri-msgs` (see below).
HRI_MSGS_SRC ?= ../shared/hri_msgs

.PHONY: setup demo test test-fast bench clean ros2-tools
setup: $(VENV)/.pkg.stamp $(VENV)/.ament.stamp ros2-tools $(if $(wildcard $(HRI_MSGS_SRC)/package.xml),$(VENV)/.hri_msgs.stamp)

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

# `ros2 launch|run emotion_ros ...` from this venv (AMENT_PREFIX_PATH=$(VENV)): the ament-index entries a colcon
# install has, which an editable pip install does not write (no data_files). Symlinks: edits in launch/ and config/
# are live, as with `colcon build --symlink-install`.
# (File links in real folders: `ros2 launch` walks share/ without following folder links.)
$(VENV)/.ament.stamp: $(VENV)/.pkg.stamp package.xml resource/emotion_ros $(wildcard launch/* config/*)
	rm -rf $(VENV)/share/emotion_ros $(VENV)/lib/emotion_ros
	mkdir -p $(VENV)/share/emotion_ros/launch $(VENV)/share/emotion_ros/config $(VENV)/lib/emotion_ros \
	  $(VENV)/share/ament_index/resource_index/packages
	cp resource/emotion_ros $(VENV)/share/ament_index/resource_index/packages/emotion_ros
	ln -s $(CURDIR)/package.xml $(VENV)/share/emotion_ros/package.xml
	ln -s $(addprefix $(CURDIR)/,$(wildcard launch/*)) $(VENV)/share/emotion_ros/launch/
	ln -s $(addprefix $(CURDIR)/,$(wildcard config/*)) $(VENV)/share/emotion_ros/config/
	for exe in $$($(PY) -c "from importlib.metadata import distribution as d; \
	    print(*(e.name for e in d('emotion_ros').entry_points if e.group == 'console_scripts'))"); do \
	  ln -sfn ../../bin/$$exe $(VENV)/lib/emotion_ros/$$exe; done
	touch $@

# The real ros2 CLI, launch, launch_ros and launch_testing (upstream test tools kept in ../shared, not on PyPI):
# installed when that folder exists, so tests run `ros2 launch` as users do; they skip with the reason without it.
ROS2_TOOLS := $(wildcard $(CURDIR)/../shared/ros2-tools/install.sh)
ros2-tools: $(VENV)/.pkg.stamp
ifneq ($(ROS2_TOOLS),)
	@[ -f $(VENV)/.ros2-tools.stamp ] && [ $(VENV)/.ros2-tools.stamp -nt $(ROS2_TOOLS) ] || \
	  { $(ROS2_TOOLS) $(VENV) && touch $(VENV)/.ros2-tools.stamp; }
else
	@echo "make setup: ../shared/ros2-tools not found: ros2 launch/CLI tests will skip"
endif

# hri_msgs (REP-155 / ROS4HRI interfaces, not ours; on a robot: apt install ros-<distro>-hri-msgs) for the optional
# hri_publisher_node: built from HRI_MSGS_SRC with the emotion_msgs recipe into the venv. `make setup` runs it when
# that folder exists; `make hri-msgs HRI_MSGS_SRC=/path/to/hri_msgs` builds another checkout.
HRI_MSGS_SOURCES := $(wildcard $(HRI_MSGS_SRC)/msg/*.msg $(HRI_MSGS_SRC)/CMakeLists.txt $(HRI_MSGS_SRC)/package.xml)
.PHONY: hri-msgs
hri-msgs: $(VENV)/.hri_msgs.stamp
$(VENV)/.hri_msgs.stamp: $(HRI_MSGS_SOURCES) cmake/fix_wheel_paths.cmake $(VENV)/.deps.stamp
	@[ -f $(HRI_MSGS_SRC)/package.xml ] || { echo "hri-msgs: no package.xml in HRI_MSGS_SRC=$(HRI_MSGS_SRC)"; exit 1; }
	rm -rf $(BUILD)/hri_msgs && mkdir -p $(BUILD)
	. $(VENV)/bin/activate && AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) cmake -S $(HRI_MSGS_SRC) -B $(BUILD)/hri_msgs \
	  -DCMAKE_INSTALL_PREFIX=$(CURDIR)/$(VENV) -DBUILD_TESTING=OFF -DPython3_EXECUTABLE=$(CURDIR)/$(PY) \
	  -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/cmake/fix_wheel_paths.cmake > $(BUILD)/hri_msgs.cmake.log 2>&1 || \
	  (cat $(BUILD)/hri_msgs.cmake.log; exit 1)
	cmake --build $(BUILD)/hri_msgs -j2 > $(BUILD)/hri_msgs.build.log 2>&1 || (tail -50 $(BUILD)/hri_msgs.build.log; exit 1)
	cmake --install $(BUILD)/hri_msgs > /dev/null
	$(PY) -c "from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D"
	touch $@

# Also leaves an annotated GIF of the run (path printed); DEMO_ARGS=--view serves the live web viewer.
DEMO_GIF ?= $(BUILD)/demo.gif
demo: setup
	$(LOCAL_ROS) $(VENV)/bin/emotion-live --source demo --gif $(DEMO_GIF) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest ran no tests: counted as a failure"; exit $$rc; }

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(LOCAL_ROS) $(PY) bench/run_all.py

clean:
	rm -rf $(BUILD) $(VENV)
