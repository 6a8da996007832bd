/**
 * "Latest request wins" for one kind of request (a search box, a report slot): answers of requests
 * superseded by a newer one, or cancelled, are to be dropped so that they never overwrite newer state.
 */
export function latestRequest() {
  let newest = 0
  return {
    /** Start a request, superseding every earlier one; `current` stays true until superseded. */
    start() {
      const ticket = ++newest
      return {
        get current() {
          return ticket === newest
        },
      }
    },
    /** Supersede every request started so far, without starting one. */
    cancel() {
      newest += 1
    },
  }
}
