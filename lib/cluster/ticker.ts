// A periodic async task: never overlaps itself, timer unref()'d, stop() waits for the run in flight.

export class Ticker {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private stopped = true

  /** `task` must not throw; errors are passed to `onError`. `interval` is in ms. */
  constructor (
    private readonly task: () => Promise<void>,
    public interval: number,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  get active (): boolean { return !this.stopped }

  /** Start ticking; the first run happens now unless `immediate` is false. */
  start (immediate = true): void {
    if (!this.stopped) return
    this.stopped = false
    if (immediate) this.trigger()
    else this.schedule()
  }

  /** Run now (or right after the run in flight), then keep the period from there. */
  trigger (): void {
    if (this.stopped) return
    if (this.running !== undefined) { this.again = true; return }
    clearTimeout(this.timer)
    this.timer = undefined
    this.running = this.task().catch(this.onError).finally(() => {
      this.running = undefined
      if (this.stopped) return
      if (this.again) { this.again = false; this.trigger() } else this.schedule()
    })
  }

  /** Stop ticking and wait for a run in flight. */
  async stop (): Promise<void> {
    this.stopped = true
    this.again = false
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }

  private schedule (): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.trigger(), this.interval)
    this.timer.unref()
  }
}
