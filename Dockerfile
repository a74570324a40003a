# The rateflow service of docker-compose.yml: `rateflow run`, with the npm packages it needs at run time only.
# Built by `docker compose up --build`. test/deploy.test.ts replays these steps without a Docker engine (every
# path a RUN step touches is relative to its WORKDIR, so the replay is faithful) and starts the result.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm install, not npm ci: see scripts/setup.sh (the lock file pins versions but lists only linux-x64 builds of
# chDB's and msgpackr-extract's platform packages). The TypeScript compiler is a dev dependency: build, then prune.
RUN npm install --no-fund --no-audit --loglevel=error
COPY tsconfig.json ./
COPY bin ./bin
COPY adapters ./adapters
COPY bench ./bench
COPY catalog ./catalog
COPY cli ./cli
COPY common ./common
COPY pipeline ./pipeline
COPY rating-core ./rating-core
COPY deploy ./deploy
RUN npm run build && npm prune --omit=dev --no-fund --no-audit --loglevel=error && mkdir -p data

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist
COPY --from=build /app/deploy ./deploy
# The data directory (a volume in docker-compose.yml), owned by the unprivileged user the service runs as.
COPY --from=build --chown=node:node /app/data /data
USER node
EXPOSE 8080 5514/udp 5514/tcp
CMD ["node", "bin/rateflow.js", "run", "--config", "/app/deploy/rateflow.json", "--data", "/data"]
