#!/usr/bin/env bash
# Regenerates the bundled samples with independent tools (FFmpeg, sox).
# The outputs are committed; this script documents how they were made.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -v error -y -f lavfi -i testsrc2=size=96x64:rate=1 -frames:v 1 sample.png
sox -n -r 16000 -c 1 -b 16 tone.wav synth 0.5 sine 440 vol 0.5
ffmpeg -v error -y -f lavfi -i testsrc2=size=96x64:rate=8 -f lavfi -i sine=frequency=330:sample_rate=16000 \
  -t 1 -c:v libx264 -pix_fmt yuv420p -c:a aac -b:a 32k -shortest clip.mp4
