#!/bin/sh
# Regenerates the recorded V4L2 buffers of this folder and ffmpeg's RGB of each (SOURCES.md).
# Deterministic: the same ffmpeg gives the same bytes. Run from anywhere: sh make.sh
set -eu
cd "$(dirname "$0")"
size=64x48
ff() { ffmpeg -v error -nostdin -y "$@"; }
# A smooth gradient with three saturated blocks whose edges fall on even rows and columns (where
# 4:2:2 and 4:2:0 chroma is shared), so that subsampling the source does not blur them.
ff -f lavfi -i "color=c=black:s=$size:d=1,format=rgb24,geq=\
r='if(between(X,16,31)*between(Y,8,23),230,40+2*X)':\
g='if(between(X,32,47)*between(Y,24,39),220,30+3*Y)':\
b='if(between(X,48,63)*between(Y,8,23),210,200-X-Y)'" \
  -frames:v 1 -f rawvideo -pix_fmt rgb24 source.rgb
# Each V4L2 format as a driver would fill its buffer (packed rows, no padding), then ffmpeg's
# own conversion of that very buffer to RGB (BT.601, limited range for YUV; nearest chroma;
# full_chroma_int+accurate_rnd for exact rounding: without them swscale truncates, about 1.5
# levels low).
for pair in yuyv:yuyv422 uyvy:uyvy422 nv12:nv12 grey:gray rgb24:rgb24 bgr24:bgr24; do
  name=${pair%%:*}
  fmt=${pair#*:}
  ff -f rawvideo -pix_fmt rgb24 -s $size -i source.rgb -sws_flags neighbor+accurate_rnd+bitexact \
    -pix_fmt "$fmt" -f rawvideo "$name.raw"
  ff -f rawvideo -pix_fmt "$fmt" -s $size -i "$name.raw" \
    -sws_flags neighbor+accurate_rnd+full_chroma_int+bitexact -pix_fmt rgb24 -f rawvideo \
    "$name.expected.rgb"
done
# MJPEG as UVC cameras send it (baseline, 4:2:2, the standard Huffman tables), and in 4:4:4,
# where no chroma is upsampled, so that decoders differ only by their IDCT and rounding; and
# ffmpeg's decoding of each (bicubic chroma upsampling, the nearest to the triangle filter of
# zune-jpeg, which `image` decodes with).
for pair in mjpeg:yuvj422p mjpeg444:yuvj444p; do
  name=${pair%%:*}
  fmt=${pair#*:}
  ff -f rawvideo -pix_fmt rgb24 -s $size -i source.rgb -c:v mjpeg -huffman default -q:v 3 \
    -pix_fmt "$fmt" -frames:v 1 -f mjpeg "$name.raw"
  ff -i "$name.raw" -sws_flags bicubic+accurate_rnd+full_chroma_int+bitexact -pix_fmt rgb24 \
    -f rawvideo "$name.expected.rgb"
done
rm source.rgb
