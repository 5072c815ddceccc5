mod crash;
mod gates;
mod lessons;
mod lifecycle;
mod night;
mod operator;
mod state_files;
