import type { Logger } from "../stream/channel.ts";
import type { Handler } from "./handler.ts";

/** What an agent offers its plug-ins. */
export interface AgentPluginHost {
  /** The node's id once enrolled; undefined before. */
  readonly nodeId: string | undefined;
  readonly log: Logger;
}

/**
 * A feature that runs inside a node agent (checkpoints, standby, …) without the agent importing it:
 * `new NodeAgent({ ..., plugins: [nodeCheckpoints({ state, objects })] })`.
 */
export interface AgentPlugin {
  /** Names the plug-in in logs and errors. */
  readonly name: string;
  /** Methods the plug-in handles; a name the application's handlers also use is refused at construction. */
  handlers(host: AgentPluginHost): Record<string, Handler>;
  /** Called once after the agent has an identity, before it first connects. */
  start?(host: AgentPluginHost): void;
  /** Called when the agent stops, after its handlers have settled. */
  close?(): Promise<void>;
}
