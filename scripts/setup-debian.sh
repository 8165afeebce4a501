#!/usr/bin/env bash
# Installs the Debian packages anyforge needs to build and test, when missing:
# FFmpeg's development libraries (ffmpeg-next links them), clang (bindgen),
# pkg-config, and the independent tools the tests make fixtures with
# (ffmpeg, sox, ImageMagick), and Python with venv for the OpenAI SDK
# compatibility test. Run as root, or with sudo available.
set -euo pipefail
need=()
pkg-config --exists libavformat libavcodec libswscale libswresample libavutil 2>/dev/null \
  || need+=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v sox >/dev/null || need+=(sox)
# The OpenAI SDK compatibility test runs the SDK in a Python venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3 python3-venv)
[ -x /usr/bin/convert ] || need+=(imagemagick)
# Training and evaluating the starter pack's speech (docs/training.md): the
# teacher voice (training reads it through its library, for phoneme timing;
# the tests compare it with the program), and CMUdict with an independent
# recogniser.
command -v espeak-ng >/dev/null || need+=(espeak-ng)
ls /usr/lib/*/libespeak-ng.so.1 >/dev/null 2>&1 || need+=(libespeak-ng1)
command -v pocketsphinx_continuous >/dev/null || need+=(pocketsphinx)
[ -f /usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict ] || need+=(pocketsphinx-en-us)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
