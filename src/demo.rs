//! Demo mode's driver: keeps a realistic engagement going on the in-process
//! simulator so a newcomer sees the whole flow with no set-up.

use crate::app::AppState;
use crate::sim::SimHandle;

pub async fn drive(_sim: SimHandle, _state: AppState) {}
