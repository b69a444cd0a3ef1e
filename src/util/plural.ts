/** `1 node`, `2 nodes`, `0 replies`: a count with its noun, for output people read. (Default plural: one + "s") */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
