{
  "targets": [
    {
      "target_name": "hoardfs_fuse",
      "sources": ["hoardfs_fuse.c"],
      "cflags": ["<!@(pkg-config fuse3 --cflags)", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "libraries": ["<!@(pkg-config fuse3 --libs)"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "hoardfs_gf",
      "sources": ["hoardfs_gf.c"],
      "cflags": ["-std=gnu11", "-O3", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "hoardfs_aead",
      "sources": ["hoardfs_aead.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "hoardfs_cdc",
      "sources": ["hoardfs_cdc.c"],
      "cflags": ["-std=gnu11", "-O3", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
