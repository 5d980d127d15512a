export {
  type Account,
  BASE_PATH,
  type ExecOptions,
  type ExecResult,
  exec,
  execOk,
  freePort,
  isListening,
  makeDir,
  makeTempDir,
  postgresAccount,
  RigError,
  withLiveClock,
} from "./exec.js"
export { makeLocalEnv as makePgBackRestEnv, PGBACKREST, runPgBackRest } from "./pgbackrest.js"
export * as PostgresCluster from "./postgres.js"
export { childrenOf, isAlive, killAll } from "./process.js"
export * as S3Endpoint from "./s3.js"
export { type Certificates, makeCertificates } from "./tls.js"
