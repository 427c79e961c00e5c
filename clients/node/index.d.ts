// Types for the tchannel-mock Node client (docs/clients-node.md).

export type Mode = 'once' | 'new_episodes' | 'none' | 'all';
export type Outcome = 'replayed' | 'recorded' | 'unmatched' | 'failed' | 'hyperbahn';

export interface StartOptions {
    /** Cassette files or directories, in the order the mock asks them. */
    cassettes?: string | string[];
    mode?: Mode;
    /** The real service(s) for record-through, HOST:PORT. */
    upstream?: string | string[];
    recordTo?: string;
    allowRepeats?: boolean;
    match?: string | string[];
    /** Extra command-line arguments, placed before the cassettes. */
    args?: string[];
    /** Path of tchannel-mock; else $TCHANNEL_MOCK_BIN, else PATH. */
    bin?: string;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    /** Listen address (default 127.0.0.1). */
    host?: string;
    /** Bearer token: written to a private file passed as --admin-token-file. */
    adminToken?: string;
    /** Folders the admin API may load from and record into (--cassette-root). */
    cassetteRoots?: string | string[];
    /** Bound on start-up (default 10000 ms). */
    startTimeoutMs?: number;
    /** Bound on each wait of stop(): after SIGTERM, then after SIGKILL (default 5000 ms). */
    stopTimeoutMs?: number;
}

export interface VerifyOptions {
    /** Fail if any request matched no interaction or stub (default true). */
    unmatched?: boolean;
    /** Fail if an interaction or stub marked required was never called (default true). */
    required?: boolean;
    /** Fail if an interaction was never played (default false). */
    allPlayed?: boolean;
}

export interface Health {
    status: string;
    listening: string;
    mode: Mode;
    cassettes: number;
    interactions: number;
    loadErrors: number;
    calls: number;
    misses: number;
    uptimeMs: number;
    recording: boolean;
}

export interface Interaction {
    index: number;
    line?: number;
    service?: string;
    endpoint?: string;
    scheme?: string;
    plays?: number;
    error?: string;
    delayMs?: number;
    fault?: string;
    pending?: boolean;
    aborted?: boolean;
}

export interface Cassette {
    path: string;
    mode: Mode;
    recordTarget: boolean;
    canRecord: boolean;
    loadedAtMs: number;
    reloads: number;
    plays: number;
    pendingRecordings: number;
    loadError: string | null;
    interactions: Interaction[];
}

export interface CassetteList {
    mode: Mode;
    cassettes: Cassette[];
}

export interface JournalEntry {
    seq: number;
    timeMs: number;
    service: string;
    endpoint: string;
    scheme: string;
    peer: string;
    outcome: Outcome;
    matched: boolean;
    cassette?: string;
    index?: number;
    stubId?: string;
    message?: string;
    nearMiss?: unknown;
    headers?: string;
    body?: string;
    bodyDecoded?: unknown;
    [more: string]: unknown;
}

/** Match rules, as a stub's `request` (docs/cassettes.md#stubs). */
export type MatchRules = Record<string, unknown>;

/** A run-time stub; what the mock answers also has `plays`. */
export interface Stub {
    id?: string;
    priority?: number;
    required?: boolean;
    scenario?: string;
    requiredState?: string;
    newState?: string;
    request: MatchRules;
    response?: Record<string, unknown>;
    error?: { code: string; message?: string };
    plays?: number;
    [more: string]: unknown;
}

export interface Scenario {
    name: string;
    state: string;
    possibleStates: string[];
}

export interface NotCalled {
    cassette: string;
    index: number;
    id?: string;
    line: number;
    service: string;
    endpoint: string;
    describe: string;
}

export interface VerifyReport {
    ok: boolean;
    notCalled: NotCalled[];
    unmatched: number;
    unmatchedRequests: JournalEntry[];
}

export interface Redactions {
    headers: string[];
    transportHeaders: string[];
    jsonPaths: string[];
    thriftFields: string[];
}

export interface Journal {
    capacity: number;
    total: number;
    dropped: number;
    matching: number;
    entries: JournalEntry[];
}

export interface JournalFilter {
    service?: string;
    endpoint?: string;
    outcome?: Outcome;
    limit?: number;
}

export interface ReloadResult {
    path: string;
    ok: boolean;
    error: string | null;
}

export declare class AdminError extends Error {
    method: string;
    path: string;
    status: number;
    /** The mock's own message. */
    mockMessage: string;
    body: unknown;
}

export declare class MockError extends Error {
    /** What the mock wrote to stderr (the last 64 KiB). */
    stderr: string;
}

export declare class VerifyError extends Error {
    problems: string[];
}

export declare class AdminClient {
    constructor(url: string, options?: { token?: string; timeoutMs?: number });
    url: string;
    request(method: string, path: string, body?: unknown, alsoOk?: number): Promise<any>;
    health(): Promise<Health>;
    cassettes(): Promise<CassetteList>;
    loadCassette(path: string, options?: { recordTarget?: boolean }): Promise<Cassette[]>;
    unloadCassette(path: string): Promise<{ unloaded: string }>;
    reload(): Promise<{ reloaded: ReloadResult[] }>;
    reset(): Promise<{ reloaded: ReloadResult[]; journalCleared: boolean }>;
    rewind(): Promise<{ rewound: number }>;
    mode(): Promise<Mode>;
    setMode(mode: Mode): Promise<Mode>;
    journal(filter?: JournalFilter): Promise<Journal>;
    count(filter?: Omit<JournalFilter, 'limit'>): Promise<number>;
    unmatched(): Promise<JournalEntry[]>;
    unmatchedReport(): Promise<{ count: number; unmatchedSinceClear: number;
        entries: JournalEntry[] }>;
    findRequests(rules?: MatchRules): Promise<JournalEntry[]>;
    countRequests(rules?: MatchRules): Promise<number>;
    clearJournal(): Promise<number>;
    /** GET /verify; a 409 resolves with ok false. */
    verify(): Promise<VerifyReport>;
    stubs(): Promise<Stub[]>;
    stub(id: string): Promise<Stub>;
    addStub(stub: Stub): Promise<Stub>;
    replaceStub(id: string, stub: Stub): Promise<Stub>;
    deleteStub(id: string): Promise<string>;
    deleteStubs(): Promise<number>;
    saveStubs(path: string, options?: { overwrite?: boolean }): Promise<number>;
    scenarios(): Promise<Scenario[]>;
    setScenarioState(name: string, state: string): Promise<string>;
    resetScenarios(): Promise<{ reset: boolean }>;
    redactions(): Promise<Redactions>;
    setRedactions(set: Partial<Redactions>): Promise<Redactions>;
    hyperbahn(): Promise<any>;
}

export declare class MockServer {
    pid: number;
    binary: string;
    binarySource: 'option' | 'TCHANNEL_MOCK_BIN' | 'PATH';
    /** TChannel address, HOST:PORT. */
    hostPort: string;
    host: string;
    port: number;
    adminHostPort: string;
    adminUrl: string;
    admin: AdminClient;
    exited: { code: number | null; signal: string | null } | null;
    stderr(): string;
    stop(): Promise<{ code: number | null; signal: string | null }>;
    verify(options?: VerifyOptions): Promise<void>;
}

export declare function startMock(options?: StartOptions): Promise<MockServer>;
export declare function withMock<T>(
    options: StartOptions & { verify?: boolean | VerifyOptions },
    fn: (mock: MockServer) => Promise<T> | T): Promise<T>;
export declare function findBinary(explicit?: string, env?: NodeJS.ProcessEnv):
    { path: string; source: 'option' | 'TCHANNEL_MOCK_BIN' | 'PATH' };
