# Offline nginx image for nginx-proxy, from our debootstrapped base
# (nginx-light + libnginx-mod-stream). Online, compose uses the official
# NGINX_IMAGE (nginx:1.27-bookworm) as is; in both cases nginx/nginx.conf is
# bind-mounted over /etc/nginx/nginx.conf, so nothing is configured here
# except what `docker import` lost (CMD, STOPSIGNAL).
# Build context: repository root.
#   docker build -f docker/nginx.Dockerfile -t telemetria/nginx:latest .
ARG BASE=telemetria/nginx-base:latest
FROM ${BASE}

# Same defaults as the official image: foreground master, graceful stop.
EXPOSE 3306
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
